"""References: each model as its users would run it, built from the checkpoint's files with transformers / PEFT,
sharing no code with embcc's export side (families, export, runtimes)."""
