"""Public, torch-shaped functions, one module per op family: validate, canonicalise, allocate, launch."""
