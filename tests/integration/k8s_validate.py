# SPDX-License-Identifier: Apache-2.0
"""Validate the documents of a YAML stream against a CustomResourceDefinition's OpenAPI v3 schema, as the
API server would with `kubectl --validate=strict`: jsonschema on spec.versions[].schema.openAPIV3Schema (the
version the document's apiVersion names), then a walk that fails on every field the schema does not
declare, except under x-kubernetes-preserve-unknown-fields. Documents of another group or kind are an
error. Prints one line per problem and exits 1 when there is one.

usage: /usr/bin/python3 k8s_validate.py CRD.yaml MANIFEST.yaml
"""
import sys

import jsonschema
import yaml

# ObjectMeta's fields a manifest may set (the CRD schemas say only "type: object" for metadata)
OBJECT_META = {"name", "namespace", "labels", "annotations", "generateName", "finalizers"}


def undeclared(value, schema, where, problems):
    """Every field of VALUE that SCHEMA does not declare, into PROBLEMS."""
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return
    if isinstance(value, dict):
        props = schema.get("properties")
        extra = schema.get("additionalProperties")
        for k, v in value.items():
            if props is not None and k in props:
                undeclared(v, props[k], f"{where}.{k}", problems)
            elif isinstance(extra, dict):
                undeclared(v, extra, f"{where}.{k}", problems)
            else:
                problems.append(f"{where}.{k}: not declared by the schema")
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, v in enumerate(value):
            undeclared(v, schema["items"], f"{where}[{i}]", problems)


def main() -> int:
    crd = yaml.safe_load(open(sys.argv[1]))
    group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
    versions = {v["name"]: v["schema"]["openAPIV3Schema"] for v in crd["spec"]["versions"]}
    problems = []
    docs = [d for d in yaml.safe_load_all(open(sys.argv[2])) if d is not None]
    if not docs:
        problems.append("no document")
    for n, doc in enumerate(docs):
        api = str(doc.get("apiVersion", ""))
        g, _, v = api.rpartition("/")
        if g != group or v not in versions or doc.get("kind") != kind:
            problems.append(f"document {n}: {api} {doc.get('kind')} is not a {group} {kind}")
            continue
        schema = versions[v]
        for e in jsonschema.Draft7Validator(schema).iter_errors(doc):
            problems.append(f"document {n}: {'.'.join(map(str, e.absolute_path))}: {e.message}")
        for k in doc.get("metadata", {}):
            if k not in OBJECT_META:
                problems.append(f"document {n}: metadata.{k}: not a field of ObjectMeta")
        body = {k: val for k, val in doc.items() if k != "metadata"}
        undeclared(body, {"properties": {k: s for k, s in schema["properties"].items() if k != "metadata"}},
                   f"document {n}", problems)
    for p in problems:
        print(p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
