"""Array type aliases used in signatures (jaxtyping)."""

from jaxtyping import Array, Float, Int, PRNGKeyArray, PyTree

Key = PRNGKeyArray

__all__ = ["Array", "Float", "Int", "Key", "PyTree"]
