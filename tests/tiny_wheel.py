"""A wheelhouse without a download: a one-module wheel built by hand, and pip cut off from
every index, for the offline set-up tests (pure Python and real Blender alike)."""

from __future__ import annotations

import base64
import hashlib
import os
import zipfile

# pip pointed at a port nothing listens on, and kept away from this machine's own pip config
NO_NETWORK = {"PIP_INDEX_URL": "http://127.0.0.1:9/simple", "PIP_FIND_LINKS": "",
              "PIP_CONFIG_FILE": os.devnull, "PIP_RETRIES": "1", "PIP_DEFAULT_TIMEOUT": "2"}


def tiny_wheel(folder) -> None:
    """A one-module wheel, built by hand: what a wheelhouse holds, without any download."""
    files = {"tinydep/__init__.py": b"VALUE = 42\n",
             "tinydep-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: tinydep\nVersion: 1.0\n",
             "tinydep-1.0.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: "
                                            b"true\nTag: py3-none-any\n"}
    record = []
    for name, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(data)}")
    record.append("tinydep-1.0.dist-info/RECORD,,")
    files["tinydep-1.0.dist-info/RECORD"] = ("\n".join(record) + "\n").encode()
    folder.mkdir()
    with zipfile.ZipFile(folder / "tinydep-1.0-py3-none-any.whl", "w") as wheel:
        for name, data in files.items():
            wheel.writestr(name, data)
