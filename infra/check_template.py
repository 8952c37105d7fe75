#!/usr/bin/env python3
"""Checks template.yaml, the AWS SAM template.

Run it with a Python that has cfn-lint (infra/python-env.sh makes one: $LABELING_CFN_PYTHON):

    .venv/cfn/bin/python infra/check_template.py [--template template.yaml] [--openapi PATH]

1. cfn-lint: any error fails the check; warnings and informational findings are printed.
2. Routes: every (method, path) of the OpenAPI document (shared/api/src/openapi.json) has an
   HttpApi event in some AWS::Serverless::Function of the template, and the template has no
   route the document lacks. Not deployed on AWS, so not expected: /blobs/* (the local
   server's signed blob URLs; S3 presigns on AWS) and POST /users (local users; on AWS users
   come from Cognito or the OIDC provider).
3. Auth: the HTTP API has a default (JWT) authorizer, and a route opts out of it
   (`Auth: {Authorizer: NONE}`) exactly when its OpenAPI operation has `security: []`.

Exit status 0 when everything holds, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "options"}

# cfn-lint's exit status is a bit mask: 2 errors, 4 warnings, 8 informational; anything else
# (1, or a status outside the mask) means it could not run or parse the template.
CFN_LINT_ERROR = 2
CFN_LINT_ALLOWED = 4 | 8


def local_only(method: str, path: str) -> bool:
    """Routes served only by the local (embedded) server."""
    return path == "/blobs" or path.startswith("/blobs/") or (method == "POST" and path == "/users")


def run_cfn_lint(template: Path) -> bool:
    """Runs cfn-lint in this interpreter's environment; True when it reports no error."""
    command = [
        sys.executable,
        "-c",
        "import sys; from cfnlint.runner import main; sys.exit(main())",
        "--",
        str(template),
    ]
    print(f"== cfn-lint {template.name}")
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    output = (completed.stdout + completed.stderr).strip()
    print(output if output else "(no findings)")
    status = completed.returncode
    if status & ~CFN_LINT_ALLOWED:
        reason = "errors" if status & CFN_LINT_ERROR else "it failed to run"
        print(f"cfn-lint: exit status {status}: {reason}")
        return False
    if status:
        print(f"cfn-lint: exit status {status}: warnings/informational only (allowed)")
    else:
        print("cfn-lint: no errors, no warnings")
    return True


def load_template(template: Path) -> dict:
    """Parses the template with cfn-lint's own decoder (it understands !Ref, !Sub, !GetAtt...)."""
    from cfnlint.decode import decode  # imported here so the usage error above stays readable

    parsed, matches = decode(str(template))
    if matches or parsed is None:
        for match in matches or []:
            print(f"parse error: {match}")
        raise SystemExit(f"cannot parse {template}")
    return parsed


def template_routes(parsed: dict) -> tuple[dict[tuple[str, str], list[str]], list[str], list[str]]:
    """(method, path) -> the functions whose HttpApi events serve it; the public routes
    (`Auth: {Authorizer: NONE}`); problems found on the way."""
    routes: dict[tuple[str, str], list[str]] = {}
    public: set[tuple[str, str]] = set()
    problems: list[str] = []
    for name, resource in (parsed.get("Resources") or {}).items():
        if not isinstance(resource, dict) or resource.get("Type") != "AWS::Serverless::Function":
            continue
        events = (resource.get("Properties") or {}).get("Events") or {}
        for event_name, event in events.items():
            if not isinstance(event, dict) or event.get("Type") != "HttpApi":
                continue
            properties = event.get("Properties") or {}
            method, path = properties.get("Method"), properties.get("Path")
            if not isinstance(method, str) or not isinstance(path, str):
                problems.append(f"{name}.{event_name}: Method and Path must be literal strings")
                continue
            key = (method.upper(), path)
            routes.setdefault(key, []).append(f"{name}.{event_name}")
            auth = properties.get("Auth") or {}
            if isinstance(auth, dict) and auth.get("Authorizer") == "NONE":
                public.add(key)
    for key, owners in routes.items():
        if len(owners) > 1:
            problems.append(f"{key[0]} {key[1]} is routed more than once: {', '.join(owners)}")
    return routes, sorted(f"{m} {p}" for m, p in public), problems


def openapi_operations(document: dict) -> dict[tuple[str, str], bool]:
    """(method, path) -> whether the operation is public (`security: []`)."""
    default_public = document.get("security") in (None, [])
    operations = {}
    for path, item in (document.get("paths") or {}).items():
        for method, operation in item.items():
            if method.lower() not in HTTP_METHODS or not isinstance(operation, dict):
                continue
            security = operation.get("security")
            is_public = security == [] if security is not None else default_public
            operations[(method.upper(), path)] = is_public
    return operations


def default_authorizer_problems(parsed: dict) -> list[str]:
    """Every AWS::Serverless::HttpApi must have a default authorizer."""
    problems = []
    apis = {
        name: resource
        for name, resource in (parsed.get("Resources") or {}).items()
        if isinstance(resource, dict) and resource.get("Type") == "AWS::Serverless::HttpApi"
    }
    if not apis:
        problems.append("no AWS::Serverless::HttpApi resource")
    for name, resource in apis.items():
        auth = (resource.get("Properties") or {}).get("Auth") or {}
        if not auth.get("DefaultAuthorizer"):
            problems.append(f"{name} has no Auth.DefaultAuthorizer: every route would be public")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--template", type=Path, default=ROOT / "template.yaml")
    parser.add_argument("--openapi", type=Path, default=ROOT / "shared/api/src/openapi.json")
    args = parser.parse_args()

    try:
        import cfnlint  # noqa: F401
    except ImportError:
        print("cfn-lint is not installed in this Python; run infra/python-env.sh and use "
              "$LABELING_CFN_PYTHON (.venv/cfn/bin/python)", file=sys.stderr)
        return 1

    ok = run_cfn_lint(args.template)

    print(f"\n== routes: {args.template} vs {args.openapi}")
    parsed = load_template(args.template)
    routes, public_routes, problems = template_routes(parsed)
    problems += default_authorizer_problems(parsed)
    operations = openapi_operations(json.loads(args.openapi.read_text()))

    expected = {key: public for key, public in operations.items() if not local_only(*key)}
    skipped = sorted(f"{m} {p}" for m, p in operations if local_only(m, p))
    missing = sorted(f"{m} {p}" for m, p in expected if (m, p) not in routes)
    extra = sorted(f"{m} {p}" for m, p in routes if (m, p) not in expected)
    expected_public = sorted(f"{m} {p}" for (m, p), public in expected.items() if public)
    for route in missing:
        problems.append(f"in the OpenAPI document but not in the template: {route}")
    for route in extra:
        problems.append(f"in the template but not in the OpenAPI document: {route}")
    for route in sorted(set(public_routes) ^ set(expected_public)):
        if route in public_routes:
            problems.append(f"public (Authorizer NONE) in the template but needs a token in the OpenAPI document: {route}")
        elif route not in missing:
            problems.append(f"public in the OpenAPI document (security: []) but behind the authorizer in the template: {route}")

    by_function: dict[str, int] = {}
    for owners in routes.values():
        for owner in owners:
            function = owner.split(".")[0]
            by_function[function] = by_function.get(function, 0) + 1
    print(f"OpenAPI operations: {len(operations)} ({len(skipped)} local only, not deployed: {', '.join(skipped)})")
    print(f"template routes: {len(routes)} ({', '.join(f'{f} {n}' for f, n in sorted(by_function.items()))})")
    print(f"public routes: {', '.join(public_routes) or 'none'}")
    matched = len([key for key in expected if key in routes])
    print(f"matched: {matched} of {len(expected)} deployable operations")

    if problems:
        print("\nPROBLEMS:")
        for problem in problems:
            print(f"  - {problem}")
        ok = False

    print("\nOK" if ok else "\nFAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
