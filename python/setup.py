"""Build hook: generates the ktune.v1 gRPC stubs (ktune/v1/*_pb2*.py) from the .proto files.

The .proto files are found in $KTUNE_PROTO_DIR, else in ../proto (building from the repository:
`pip install ./python`). The stubs are build outputs, not checked in.
"""

import os
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent


def proto_dir() -> Path:
    for candidate in (os.environ.get("KTUNE_PROTO_DIR"), HERE.parent / "proto", HERE / "proto"):
        if candidate and (Path(candidate) / "ktune" / "v1" / "types.proto").is_file():
            return Path(candidate)
    raise RuntimeError(
        "ktune's .proto files were not found: build from the repository (pip install ./python) "
        "or set KTUNE_PROTO_DIR to the folder holding ktune/v1/*.proto")


def generate_stubs() -> None:
    import grpc_tools
    from grpc_tools import protoc

    src = proto_dir()
    protos = sorted(str(p.relative_to(src)) for p in (src / "ktune" / "v1").glob("*.proto"))
    well_known = Path(grpc_tools.__file__).parent / "_proto"
    args = ["grpc_tools.protoc", f"-I{src}", f"-I{well_known}", f"--python_out={HERE}",
            f"--pyi_out={HERE}", f"--grpc_python_out={HERE}", *protos]
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed on {protos} in {src}")


class BuildPyWithStubs(build_py):
    def run(self) -> None:
        generate_stubs()
        super().run()


if __name__ == "__main__":  # setuptools runs this file as __main__
    setup(cmdclass={"build_py": BuildPyWithStubs})
