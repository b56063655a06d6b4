-- The seed's api_keys table (E2.S2), with the constraints it implies made explicit:
-- one row per key hash, a 64-hex SHA-256 digest only, a positive per-minute limit.
CREATE TABLE IF NOT EXISTS api_keys (
    id UUID PRIMARY KEY,
    key_hash VARCHAR(64) NOT NULL UNIQUE CHECK (key_hash ~ '^[0-9a-f]{64}$'),
    tenant_id UUID NOT NULL,
    name VARCHAR(255),
    scopes TEXT[] NOT NULL DEFAULT ARRAY['events:write'],
    rate_limit INT NOT NULL DEFAULT 10000 CHECK (rate_limit > 0),
    is_active BOOLEAN NOT NULL DEFAULT true,
    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    expires_at TIMESTAMPTZ,
    last_used_at TIMESTAMPTZ
);

CREATE INDEX IF NOT EXISTS api_keys_tenant_id_idx ON api_keys (tenant_id);
