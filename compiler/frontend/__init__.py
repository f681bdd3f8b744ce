"""Front end: spec text -> a checked, desugared AST (parse, desugar, check)."""
