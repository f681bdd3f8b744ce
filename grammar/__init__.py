"""The .bp grammar (bp.lark). Installed as the package ``compiler._grammar``."""
