#!/usr/bin/env python3
"""Checks template.yaml, the AWS SAM template.

Run it with a Python that has cfn-lint (infra/python-env.sh makes one: $LABELING_CFN_PYTHON):

    labeling openapi > /tmp/openapi.json
    .venv/cfn/bin/python infra/check_template.py --openapi /tmp/openapi.json [--template template.yaml]
        [--cargo-toml Cargo.toml] [--no-cfn-lint]

1. cfn-lint: any error fails the check; warnings and informational findings are printed.
2. Routes: every (method, path) of the OpenAPI document (generated from the code: `labeling openapi`) has an
   HttpApi event in some AWS::Serverless::Function of the template, and the template has no
   route the document lacks, but the web app's (GET / and GET /app/{file}, public). Not deployed on AWS, so not expected: /blobs/* (the local
   server's signed blob URLs; S3 presigns on AWS) and POST /users (local users; on AWS users
   come from Cognito or the OIDC provider).
3. Auth: the HTTP API has a default (JWT) authorizer, and a route opts out of it
   (`Auth: {Authorizer: NONE}`) exactly when its OpenAPI operation has `security: []`.
4. What the linters miss, each a defect a deploy or an audit once found:
   - rules: inside `Rules` only rule functions (Fn::And, Fn::Contains, ..., Ref); anything else
     (Fn::Join, Fn::If, Fn::Sub...) passes cfn-lint and `sam validate` but fails the deploy.
   - logs: every function names its log group (`LoggingConfig.LogGroup: !Ref` a log group of
     the template, JSON format); otherwise an early invocation makes Lambda create the group and
     the stack fails on "already exists". No /aws/lambda/ group is left that no function names.
   - queues: every SQS event source's queue has a visibility timeout of at least 6x its
     function's timeout (AWS's advice), so a slow invocation's messages are not redelivered.
   - conditional parameters: an SSM parameter type (resolved at every deploy, failing where it
     cannot be read) is not used only by conditional resources.
   - writes: a function's s3:PutObject names a prefix (`.../datasets/*`), never a whole bucket.
   - kept resources: tables, buckets, user pools and their groups are kept by `sam delete`
     (DeletionPolicy Retain) and created only when an `Existing...` parameter is empty, so a
     stack deployed again can reuse them instead of failing on their names.
   - operations: every function has alarms on Errors and Throttles and X-Ray tracing, every
     HTTP API an alarm on 5xx and access logs, every dead-letter queue an alarm.
   - binaries: every rust-cargolambda function's package strips its release binary
     (`[profile.release.package.<pkg>] strip`), and the release profile sets `panic` (else
     `cargo lambda build --release` makes it "abort").

Exit status 0 when everything holds, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "options"}

# cfn-lint's exit status is a bit mask: 2 errors, 4 warnings, 8 informational; anything else
# (1, or a status outside the mask) means it could not run or parse the template.
CFN_LINT_ERROR = 2
CFN_LINT_ALLOWED = 4 | 8

# The functions CloudFormation allows inside Rules (RuleCondition and Assert).
RULE_FUNCTIONS = {
    "Fn::And", "Fn::Contains", "Fn::EachMemberEquals", "Fn::EachMemberIn", "Fn::Equals",
    "Fn::Not", "Fn::Or", "Fn::RefAll", "Fn::ValueOf", "Fn::ValueOfAll", "Ref",
}
FUNCTION_TYPES = {"AWS::Serverless::Function", "AWS::Lambda::Function"}
# Hold data: kept when the stack is deleted, and reusable by a stack deployed again.
KEPT_TYPES = {
    "AWS::DynamoDB::Table", "AWS::S3::Bucket", "AWS::Cognito::UserPool", "AWS::Cognito::UserPoolGroup",
}


# The web app's files (shared/api/src/web.rs): served by the same router as the API but not
# part of the OpenAPI document; public, since the sign-in page must load without a token.
WEB_APP_ROUTES = {("GET", "/"): True, ("GET", "/app/{file}"): True}


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


def resources_of(parsed: dict, types: set[str]) -> dict[str, dict]:
    return {
        name: resource
        for name, resource in (parsed.get("Resources") or {}).items()
        if isinstance(resource, dict) and resource.get("Type") in types
    }


def intrinsics(node, path: str = ""):
    """Yields (path, function name) for every intrinsic function (a one-key dict whose key is
    Ref, Condition or Fn::...) in a parsed template fragment."""
    if isinstance(node, dict):
        for key, value in node.items():
            if len(node) == 1 and (key in ("Ref", "Condition") or key.startswith("Fn::")):
                yield path, key
            yield from intrinsics(value, f"{path}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from intrinsics(value, f"{path}/{index}")


def rules_problems(parsed: dict) -> list[str]:
    problems = []
    for name, rule in (parsed.get("Rules") or {}).items():
        parts = {"RuleCondition": (rule or {}).get("RuleCondition")}
        for index, assertion in enumerate((rule or {}).get("Assertions") or []):
            parts[f"Assertions/{index}/Assert"] = (assertion or {}).get("Assert")
        for part, node in parts.items():
            for path, function in intrinsics(node):
                if function not in RULE_FUNCTIONS:
                    problems.append(f"Rules/{name}/{part}{path}: {function} is not a rule function "
                                    "(CloudFormation refuses it at deploy time)")
    return problems


def function_property(parsed: dict, resource: dict, name: str, default=None):
    """A property of a function, or the Globals' when the function leaves it out (SAM's merge)."""
    properties = resource.get("Properties") or {}
    if name in properties:
        return properties[name]
    if resource.get("Type") == "AWS::Serverless::Function":
        return ((parsed.get("Globals") or {}).get("Function") or {}).get(name, default)
    return default


def ref_target(node) -> str | None:
    return node.get("Ref") if isinstance(node, dict) and isinstance(node.get("Ref"), str) else None


def web_sign_in_problems(parsed: dict, routes: dict[tuple[str, str], list[str]]) -> list[str]:
    """The function serving the web app knows the Cognito app client it signs in with
    (LABELING_COGNITO_CLIENT_ID from UserPoolClient): without it the app on AWS asks for a
    pasted token instead of a user name and password."""
    owners = routes.get(("GET", "/")) or []
    if not owners:
        return ["no function serves GET / (the web app)"]
    function = owners[0].split(".")[0]
    resource = (parsed.get("Resources") or {}).get(function) or {}
    variables = ((resource.get("Properties") or {}).get("Environment") or {}).get("Variables") or {}
    client = variables.get("LABELING_COGNITO_CLIENT_ID")
    if client is None or "UserPoolClient" not in json.dumps(client):
        return [f"{function} serves the web app but its LABELING_COGNITO_CLIENT_ID does not name UserPoolClient"]
    return []


def logging_problems(parsed: dict) -> list[str]:
    problems = []
    groups = resources_of(parsed, {"AWS::Logs::LogGroup"})
    named = set()
    for name, function in resources_of(parsed, FUNCTION_TYPES).items():
        config = function_property(parsed, function, "LoggingConfig") or {}
        group = ref_target(config.get("LogGroup"))
        if group is None or group not in groups:
            problems.append(f"{name} has no LoggingConfig.LogGroup naming a log group of the template "
                            "(an early invocation creates /aws/lambda/... itself, and the stack's own "
                            "group then fails on \"already exists\")")
        else:
            named.add(group)
        if config.get("LogFormat") != "JSON":
            problems.append(f"{name}: LoggingConfig.LogFormat is not JSON")
    for name, group in groups.items():
        text = json.dumps((group.get("Properties") or {}).get("LogGroupName"))
        if "/aws/lambda/" in text and name not in named:
            problems.append(f"log group {name} is named like a function's but no function's "
                            "LoggingConfig names it")
    return problems


def number(value) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def queue_visibility_problems(parsed: dict) -> list[str]:
    problems = []
    queues = resources_of(parsed, {"AWS::SQS::Queue"})
    for name, function in resources_of(parsed, {"AWS::Serverless::Function"}).items():
        timeout = number(function_property(parsed, function, "Timeout", 3))
        events = (function.get("Properties") or {}).get("Events") or {}
        for event_name, event in events.items():
            if not isinstance(event, dict) or event.get("Type") != "SQS":
                continue
            queue_arn = (event.get("Properties") or {}).get("Queue")
            attribute = queue_arn.get("Fn::GetAtt") if isinstance(queue_arn, dict) else None
            queue = attribute[0] if isinstance(attribute, list) else None
            if queue not in queues:
                problems.append(f"{name}.{event_name}: the queue is not a queue of this template")
                continue
            visibility = number((queues[queue].get("Properties") or {}).get("VisibilityTimeout", 30))
            if timeout is None or visibility is None:
                problems.append(f"{queue} / {name}: VisibilityTimeout and Timeout must be literal numbers")
            elif visibility < 6 * timeout:
                problems.append(f"{queue}: VisibilityTimeout {visibility:g} is under 6x the Timeout "
                                f"{timeout:g} of {name}, which consumes it ({event_name})")
    return problems


def uses_parameter(node, parameter: str) -> bool:
    """Whether a template fragment refers to a parameter (Ref, or ${Name} in an Fn::Sub)."""
    if isinstance(node, dict):
        if node.get("Ref") == parameter:
            return True
        if "Fn::Sub" in node and any(f"${{{parameter}}}" in text for text in strings(node["Fn::Sub"])):
            return True
        return any(uses_parameter(value, parameter) for value in node.values())
    if isinstance(node, list):
        return any(uses_parameter(value, parameter) for value in node)
    return False


def conditional_parameter_problems(parsed: dict) -> list[str]:
    problems = []
    resources = parsed.get("Resources") or {}
    for parameter, spec in (parsed.get("Parameters") or {}).items():
        kind = str((spec or {}).get("Type", ""))
        if not kind.startswith("AWS::SSM::Parameter::Value"):
            continue
        users = [name for name, resource in resources.items() if uses_parameter(resource, parameter)]
        if users and all(resources[user].get("Condition") for user in users):
            problems.append(f"parameter {parameter} ({kind}) is resolved at every deploy, but only "
                            f"conditional resources use it ({', '.join(users)}): make it a String and "
                            "resolve it where the condition holds")
    return problems


def strings(node):
    """Every string of a template fragment, the templates of Fn::Sub included."""
    if isinstance(node, str):
        yield str(node)
    elif isinstance(node, dict):
        for value in node.values():
            yield from strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from strings(value)


def statements(policy_node):
    """Policy statements of a function's Policies, looking through Fn::If."""
    if isinstance(policy_node, list):
        for item in policy_node:
            yield from statements(item)
    elif isinstance(policy_node, dict):
        if "Fn::If" in policy_node and isinstance(policy_node["Fn::If"], list):
            for branch in policy_node["Fn::If"][1:]:
                yield from statements(branch)
        elif "Statement" in policy_node:
            yield from statements(policy_node["Statement"])
        elif "Effect" in policy_node:
            yield policy_node


def put_object_problems(parsed: dict) -> list[str]:
    problems = []
    for name, function in resources_of(parsed, {"AWS::Serverless::Function"}).items():
        for statement in statements((function.get("Properties") or {}).get("Policies")):
            actions = statement.get("Action")
            actions = [actions] if isinstance(actions, str) else actions or []
            if statement.get("Effect") != "Allow" or not any(a in ("s3:PutObject", "s3:*", "*") for a in actions):
                continue
            objects = [s for s in strings(statement.get("Resource")) if s.endswith("*")]
            unscoped = [s for s in objects if not re.search(r"/[A-Za-z0-9_.\-]+/\*$", s)]
            if unscoped or not objects:
                problems.append(f"{name}: s3:PutObject ({statement.get('Sid', 'no Sid')}) on "
                                f"{', '.join(unscoped) or 'no object pattern'}: name the prefix it writes")
    return problems


def condition_parameters(parsed: dict, condition: str, seen: set[str] | None = None) -> set[str]:
    """The parameters a condition compares, through the conditions it names."""
    seen = seen if seen is not None else set()
    if condition in seen:
        return set()
    seen.add(condition)
    definition = (parsed.get("Conditions") or {}).get(condition)
    found = set()
    for path, function in intrinsics(definition):
        node = definition
        for step in [p for p in path.split("/") if p]:
            node = node[int(step)] if isinstance(node, list) else node[step]
        if function == "Ref":
            found.add(node["Ref"])
        elif function == "Condition":
            found |= condition_parameters(parsed, node["Condition"], seen)
    return found


def kept_resource_problems(parsed: dict) -> list[str]:
    problems = []
    for name, resource in resources_of(parsed, KEPT_TYPES).items():
        if resource.get("DeletionPolicy") != "Retain":
            problems.append(f"{name} ({resource['Type']}) is not kept when the stack is deleted "
                            "(DeletionPolicy Retain)")
            continue
        condition = resource.get("Condition")
        reused = {p for p in condition_parameters(parsed, condition) if p.startswith("Existing")} if condition else set()
        if not reused:
            problems.append(f"{name} is kept by `sam delete` but created unconditionally: a stack "
                            "deployed again fails on its name or orphans it; create it only when an "
                            "Existing... parameter is empty")
    return problems


def alarm_problems(parsed: dict) -> list[str]:
    problems = []
    alarms = resources_of(parsed, {"AWS::CloudWatch::Alarm"}).values()

    def has_alarm(namespace: str, metric: str, dimension: str, target: str) -> bool:
        for alarm in alarms:
            properties = alarm.get("Properties") or {}
            if properties.get("Namespace") != namespace or properties.get("MetricName") != metric:
                continue
            for item in properties.get("Dimensions") or []:
                if item.get("Name") == dimension and ref_target(item.get("Value")) == target:
                    return True
        return False

    for name, function in resources_of(parsed, FUNCTION_TYPES).items():
        for metric in ("Errors", "Throttles"):
            if not has_alarm("AWS/Lambda", metric, "FunctionName", name):
                problems.append(f"{name} has no alarm on {metric}")
        tracing = function_property(parsed, function, "Tracing")
        if function["Type"] == "AWS::Lambda::Function":
            tracing = (tracing or {}).get("Mode") if isinstance(tracing, dict) else tracing
        if tracing != "Active":
            problems.append(f"{name} has no X-Ray tracing (Tracing: Active)")
    for name, api in resources_of(parsed, {"AWS::Serverless::HttpApi"}).items():
        if not has_alarm("AWS/ApiGateway", "5xx", "ApiId", name):
            problems.append(f"{name} has no alarm on 5xx")
        if not ((api.get("Properties") or {}).get("AccessLogSettings") or {}).get("DestinationArn"):
            problems.append(f"{name} has no access logs (AccessLogSettings)")
    queues = resources_of(parsed, {"AWS::SQS::Queue"})
    for name, queue in queues.items():
        target = ((queue.get("Properties") or {}).get("RedrivePolicy") or {}).get("deadLetterTargetArn")
        attribute = target.get("Fn::GetAtt") if isinstance(target, dict) else None
        if isinstance(attribute, list):
            dead_letters = attribute[0]
            found = any(
                ((a.get("Properties") or {}).get("Namespace") == "AWS/SQS")
                and dead_letters in json.dumps(a.get("Properties"))
                for a in alarms
            )
            if not found:
                problems.append(f"dead-letter queue {dead_letters} (of {name}) has no alarm")
    return problems


def binary_problems(parsed: dict, cargo_toml: Path) -> list[str]:
    problems = []
    manifest = tomllib.loads(cargo_toml.read_text())
    packages = {}
    # Members are this repository's, wherever the manifest under test lies.
    for member in (manifest.get("workspace") or {}).get("members") or []:
        member_manifest = ROOT / member / "Cargo.toml"
        if not member_manifest.exists():
            continue
        package = tomllib.loads(member_manifest.read_text())
        for binary in package.get("bin") or [{"name": package["package"]["name"]}]:
            packages[binary.get("name")] = package["package"]["name"]
    release = (manifest.get("profile") or {}).get("release") or {}
    if "panic" not in release:
        problems.append(f"{cargo_toml.name}: [profile.release] does not set panic, so "
                        "`cargo lambda build --release` makes it \"abort\"")
    overrides = release.get("package") or {}
    for name, function in resources_of(parsed, {"AWS::Serverless::Function"}).items():
        metadata = function.get("Metadata") or {}
        if metadata.get("BuildMethod") != "rust-cargolambda":
            continue
        binary = (metadata.get("BuildProperties") or {}).get("Binary")
        package = packages.get(binary)
        if package is None:
            problems.append(f"{name}: no workspace package builds the binary {binary!r}")
        elif (overrides.get(package) or {}).get("strip") in (None, False, "none"):
            problems.append(f"{name}: its binary {binary!r} ships unstripped: set "
                            f"[profile.release.package.{package}] strip in {cargo_toml.name}")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--template", type=Path, default=ROOT / "template.yaml")
    parser.add_argument(
        "--openapi",
        type=Path,
        required=True,
        help="the OpenAPI document the server serves, e.g. written by `labeling openapi > FILE`",
    )
    parser.add_argument("--cargo-toml", type=Path, default=ROOT / "Cargo.toml")
    parser.add_argument("--no-cfn-lint", action="store_true",
                        help="skip cfn-lint (tests of the other checks on altered templates)")
    args = parser.parse_args()

    try:
        import cfnlint  # noqa: F401
    except ImportError:
        print("cfn-lint is not installed in this Python; run infra/python-env.sh and use "
              "$LABELING_CFN_PYTHON (.venv/cfn/bin/python)", file=sys.stderr)
        return 1

    ok = True if args.no_cfn_lint else run_cfn_lint(args.template)

    print(f"\n== routes: {args.template} vs {args.openapi}")
    parsed = load_template(args.template)
    routes, public_routes, problems = template_routes(parsed)
    problems += default_authorizer_problems(parsed)
    operations = openapi_operations(json.loads(args.openapi.read_text()))

    expected = {key: public for key, public in operations.items() if not local_only(*key)}
    expected.update(WEB_APP_ROUTES)
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

    print(f"\n== what the linters miss: {args.template}, {args.cargo_toml}")
    for title, found in [
        ("rules use only rule functions", rules_problems(parsed)),
        ("functions name their log groups", logging_problems(parsed)),
        ("queues outlast their consumers 6x", queue_visibility_problems(parsed)),
        ("no SSM parameter resolved for conditional resources only", conditional_parameter_problems(parsed)),
        ("PutObject names prefixes", put_object_problems(parsed)),
        ("kept resources are reusable", kept_resource_problems(parsed)),
        ("alarms, tracing and access logs", alarm_problems(parsed)),
        ("the web app signs in with the stack's app client", web_sign_in_problems(parsed, routes)),
        ("Lambda binaries are stripped and unwind", binary_problems(parsed, args.cargo_toml)),
    ]:
        print(f"{title}: {'ok' if not found else f'{len(found)} problem(s)'}")
        problems += found

    if problems:
        print("\nPROBLEMS:")
        for problem in problems:
            print(f"  - {problem}")
        ok = False

    print("\nOK" if ok else "\nFAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
