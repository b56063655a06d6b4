"""Errors of the tamper-evidence code (seals, proofs, key documents).

    AuditError (audit_ingest.errors)
    └── SealError           a seal, proof or key document is malformed or does not check out;
                            `field` names where (a JSON member or a setting), `reason` says why

Verification results are values (`seal_verify.Finding`), not exceptions: a record that was
changed is an answer, not an error. SealError is for input that cannot be read at all.
"""

from __future__ import annotations

from audit_ingest.errors import AuditError


class SealError(AuditError):
    code = "seal_invalid"

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason
