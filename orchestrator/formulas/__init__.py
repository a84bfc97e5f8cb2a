"""Domain formulas below every layer: FLOPs and parameter counts of a transformer, the cooldown fraction
Megatron-DeepSpeed needs. Pure functions that import nothing of orch, so the config engine (`expr()`) and the
planning and accounting tools share them without the config layer importing a higher one."""
