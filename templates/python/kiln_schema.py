# SPDX-License-Identifier: Apache-2.0
"""kiln_schema: Cog's OpenAPI document for a predictor, read from its source with ast (nothing is imported).

    python3 kiln_schema.py FILE.py:NAME [--train FILE.py:NAME]
                                             prints the document (with the trainer's /trainings when given),
                                             and "warning: FILE:LINE: message" lines on stderr for deprecated
                                             names; exit 1 with "FILE:LINE: message" on bad input

NAME is a class with predict() (BasePredictor) or run() (BaseRunner), or a module-level function. As a
module: schema_for(path, name) -> dict, and analyze(path, name) -> PredictorInfo for the runner.

The work is done by the modules beside this one: kiln_schema_model (the description of a predictor and its
types), kiln_schema_ast (names, literals and annotations in the source), kiln_schema_analyze (inputs and
output, checked as Cog checks them) and kiln_schema_openapi (the document).
"""

import json
import sys
from typing import Any, Dict, List, Optional, Tuple

from kiln_schema_analyze import analyze
from kiln_schema_model import (ANY, ANY_OUTPUT, BOOL, CONCAT_ITERATOR, FILE, FLOAT, INTEGER, ITERATOR, LIST,
                               OBJECT, OPTIONAL, OPTIONAL_REPEATED, PATH, REPEATED, REQUIRED, SECRET, SINGLE,
                               STRING, FieldType, InputInfo, OutputInfo, PredictorInfo, SchemaError)
from kiln_schema_openapi import add_training, document

__all__ = ["add_training", "describe", "ANY", "ANY_OUTPUT", "BOOL", "CONCAT_ITERATOR", "FILE", "FLOAT", "INTEGER", "ITERATOR", "LIST",
           "OBJECT", "OPTIONAL", "OPTIONAL_REPEATED", "PATH", "REPEATED", "REQUIRED", "SECRET", "SINGLE",
           "STRING", "FieldType", "InputInfo", "OutputInfo", "PredictorInfo", "SchemaError", "analyze",
           "document", "main", "schema_for", "split_ref"]


def split_ref(ref: str) -> Tuple[str, str]:
    """Split "FILE.py:NAME" (ValueError when it is not of that form)."""
    path, sep, name = ref.rpartition(":")
    if not sep or not path or not name.isidentifier():
        raise ValueError(f"expected FILE.py:NAME, got '{ref}'")
    return path, name


def describe(path: str, name: str, train: Optional[str] = None) -> Tuple[Dict[str, Any], List[str]]:
    """The OpenAPI document of predictor NAME in PATH, with the trainer TRAIN ("FILE.py:NAME", train:)
    and its /trainings when given, and the warnings ("FILE:LINE: message") about deprecated names they use
    (SchemaError on bad input)."""
    info = analyze(path, name)
    doc, warnings = document(info), list(info.warnings)
    if train is not None:
        tpath, tname = split_ref(train)
        tinfo = analyze(tpath, tname, ("train",))
        doc = add_training(doc, tinfo)
        warnings += tinfo.warnings
    return doc, warnings


def schema_for(path: str, name: str, train: Optional[str] = None) -> Dict[str, Any]:
    """describe()'s document alone."""
    return describe(path, name, train)[0]


def main(argv: List[str]) -> int:
    train = None
    if len(argv) == 3 and argv[1] == "--train":
        train = argv[2]
        argv = argv[:1]
    if len(argv) != 1 or argv[0] in ("-h", "--help"):
        print("usage: kiln_schema.py FILE.py:NAME [--train FILE.py:NAME]", file=sys.stderr)
        return 0 if argv[:1] in (["-h"], ["--help"]) else 2
    try:
        path, name = split_ref(argv[0])
        if train is not None:
            split_ref(train)
    except ValueError as e:
        print(f"kiln_schema: {e}", file=sys.stderr)
        return 2
    try:
        doc, warnings = describe(path, name, train)
    except SchemaError as e:
        print(e, file=sys.stderr)
        return 1
    for w in warnings:  # kiln build passes them on
        print(f"warning: {w}", file=sys.stderr)
    json.dump(doc, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
