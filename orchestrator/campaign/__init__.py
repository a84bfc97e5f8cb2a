"""The LLM campaign pack: checkpoint tracking, conversion claims, cooldown links, results, Megatron flags.

Modules here import only the standard library and `filelock` at module level: the `orch ckpt` and
`orch cooldown link` calls run as start/termination conditions every few minutes and must stay cheap.
"""
