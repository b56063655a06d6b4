"""RFC 9162 (Certificate Transparency v2) Merkle tree hash, inclusion path and its check.

Leaves here are already leaf hashes (SHA-256(0x00 || input), see seal_leaf); interior nodes
are SHA-256(0x01 || left || right); the split point is the largest power of two below n.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

_NODE = b"\x01"


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(_NODE + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


class Tree:
    """A tree over fixed leaves; subtree hashes are remembered, so every path of the tree
    costs O(n) in all, not O(n) each."""

    def __init__(self, leaves: Sequence[bytes]) -> None:
        self.leaves = leaves
        self._memo: dict[tuple[int, int], bytes] = {}

    def root(self) -> bytes:
        """MTH of the leaf hashes; SHA-256 of nothing for an empty tree."""
        if not self.leaves:
            return hashlib.sha256(b"").digest()
        return self._subtree(0, len(self.leaves))

    def _subtree(self, lo: int, hi: int) -> bytes:
        if hi - lo == 1:
            return self.leaves[lo]
        found = self._memo.get((lo, hi))
        if found is None:
            k = _split(hi - lo)
            found = _node(self._subtree(lo, lo + k), self._subtree(lo + k, hi))
            self._memo[(lo, hi)] = found
        return found

    def path(self, index: int) -> list[bytes]:
        """PATH(index, D[n]) of RFC 9162 section 2.1.3.1: sibling hashes, leaf level first."""
        if not 0 <= index < len(self.leaves):
            raise IndexError(f"leaf {index} is not in a tree of {len(self.leaves)}")
        path: list[bytes] = []
        lo, hi, m = 0, len(self.leaves), index
        while hi - lo > 1:
            k = _split(hi - lo)
            if m < k:
                path.append(self._subtree(lo + k, hi))
                hi = lo + k
            else:
                path.append(self._subtree(lo, lo + k))
                lo, m = lo + k, m - k
        path.reverse()
        return path


def root(leaves: Sequence[bytes]) -> bytes:
    """MTH of the leaf hashes (see Tree.root)."""
    return Tree(leaves).root()


def inclusion_path(leaves: Sequence[bytes], index: int) -> list[bytes]:
    """The inclusion path of one leaf (see Tree.path)."""
    return Tree(leaves).path(index)


def verify_inclusion(
    leaf: bytes, index: int, size: int, path: Sequence[bytes], expected_root: bytes
) -> bool:
    """RFC 9162 section 2.1.3.2: whether `path` proves `leaf` at `index` of the tree."""
    if index >= size or index < 0:
        return False
    fn, sn, r = index, size - 1, leaf
    for sibling in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = _node(sibling, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = _node(r, sibling)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == expected_root
