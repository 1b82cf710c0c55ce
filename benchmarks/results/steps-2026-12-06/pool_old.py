"""Load main's version of a cnnarray module as a sibling module, for interleaved A/B."""

import subprocess
import sys
import types


def load_old(modname, path):
    src = subprocess.run(
        ["git", "-C", "/work/wt-P", "show", f"main:{path}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    pkg, _, leaf = modname.rpartition(".")
    name = f"{pkg}._old_{leaf}"
    mod = types.ModuleType(name)
    mod.__package__ = pkg
    mod.__file__ = f"<old {path}>"
    sys.modules[name] = mod
    exec(compile(src, mod.__file__, "exec"), mod.__dict__)
    return mod
