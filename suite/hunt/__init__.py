"""The worst-case hunt: search space, guided search, shrinking, and the store of found cases."""
