"""What the SDK check scripts share: each check counted, the first that does not hold named on
stderr with exit status 1, and the closing line `<name>: N checks passed` the Rust test reads.
"""

import sys

_name = ["sdk"]
_count = [0]


def named(name):
    """The name the script's lines start with."""
    _name[0] = name


def check(condition, what):
    if not condition:
        print(f"{_name[0]}: FAILED: {what}", file=sys.stderr)
        sys.exit(1)
    _count[0] += 1


def raises(kind, call, what):
    try:
        call()
    except kind:
        check(True, what)
        return
    except Exception as e:  # noqa: BLE001 - the wrong exception is the failure reported
        check(False, f"{what}: raised {type(e).__name__}: {e}")
    check(False, f"{what}: nothing raised")


def passed():
    print(f"{_name[0]}: {_count[0]} checks passed")
