"""Core: warped sampling distributions (``sampling``), randomness through two calls (``rng``), argument checks
(``validation``) and exact enumeration of random programs (``enumerate``). Imports nothing else of the package."""
