"""The .bp grammar (bp.lark). Installed as the package ``bpc.compiler._grammar``."""
