//! template.yaml: cfn-lint reports no error, every route of the OpenAPI document (except the
//! local server's own) is routed by API Gateway to a function and nothing else is, and the
//! defects the linters miss (infra/check_template.py, part 4) are absent. Each of those checks
//! is also shown failing on a copy of the template with one defect put back.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

fn template() -> String {
    std::fs::read_to_string(format!("{ROOT}/template.yaml")).unwrap()
}

fn cargo_toml() -> String {
    std::fs::read_to_string(format!("{ROOT}/Cargo.toml")).unwrap()
}

/// `text` with `from` (which must be there exactly once) replaced by `to`.
fn altered(text: &str, from: &str, to: &str) -> String {
    assert_eq!(
        text.matches(from).count(),
        1,
        "expected once in the file: {from}"
    );
    text.replacen(from, to, 1)
}

/// A file of its own under the system's temporary folder.
fn fixture(name: &str, contents: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("labeling-template-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

/// Runs the check script; (whether it passed, everything it printed).
fn check(template: &Path, cargo_toml: &Path, lint: bool) -> (bool, String) {
    let python = std::env::var("LABELING_CFN_PYTHON")
        .expect("LABELING_CFN_PYTHON is not set: run ./infra/test.sh, or eval \"$(./infra/python-env.sh)\" first");
    let mut command = Command::new(python);
    command
        .arg(format!("{ROOT}/infra/check_template.py"))
        .arg("--template")
        .arg(template)
        .arg("--cargo-toml")
        .arg(cargo_toml)
        // The document is generated, not a file of the repository: the one the server serves.
        .arg("--openapi")
        .arg(fixture("openapi.json", labeling_api::openapi_json()))
        .current_dir(ROOT);
    if !lint {
        command.arg("--no-cfn-lint");
    }
    let output = command.output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), report)
}

/// The check on a copy of the template with one defect put back: it must fail, saying `why`.
fn assert_template_defect_is_caught(name: &str, template: String, why: &str) {
    let (passed, report) = check(
        &fixture(&format!("{name}.yaml"), &template),
        Path::new(&format!("{ROOT}/Cargo.toml")),
        false,
    );
    assert!(
        !passed,
        "the check passed a template with {name}:\n{report}"
    );
    assert!(report.contains(why), "expected {why:?} in:\n{report}");
}

#[test]
fn the_sam_template_lints_clean_and_routes_every_api_operation() {
    let (passed, report) = check(
        Path::new(&format!("{ROOT}/template.yaml")),
        Path::new(&format!("{ROOT}/Cargo.toml")),
        true,
    );
    assert!(passed, "{report}");
    assert!(report.contains("cfn-lint: no errors"), "{report}");
    for line in [
        "rules use only rule functions: ok",
        "functions name their log groups: ok",
        "queues outlast their consumers 6x: ok",
        "no SSM parameter resolved for conditional resources only: ok",
        "PutObject names prefixes: ok",
        "kept resources are reusable: ok",
        "alarms, tracing and access logs: ok",
        "Lambda binaries are stripped and unwind: ok",
    ] {
        assert!(report.contains(line), "expected {line:?} in:\n{report}");
    }
    assert!(report.ends_with("OK\n"), "{report}");
}

#[test]
fn fn_join_inside_a_rule_fails_the_check_though_cfn_lint_passes_it() {
    let template = altered(
        &template(),
        r#"- Assert: !Not [!Contains [!Ref WorkerSubnetIds, ""]]"#,
        r#"- Assert: !Not [!Equals [!Join ["", !Ref WorkerSubnetIds], ""]]"#,
    );
    let (passed, report) = check(
        &fixture("rules-join.yaml", &template),
        Path::new(&format!("{ROOT}/Cargo.toml")),
        true,
    );
    assert!(!passed, "{report}");
    assert!(
        report.contains("cfn-lint: no errors"),
        "cfn-lint now sees it:\n{report}"
    );
    assert!(
        report.contains("Fn::Join is not a rule function"),
        "{report}"
    );
}

#[test]
fn a_function_that_does_not_name_its_log_group_fails_the_check() {
    assert_template_defect_is_caught(
        "no-logging-config",
        altered(&template(), "        LogGroup: !Ref RefreshLogGroup\n", ""),
        "RefreshFunction has no LoggingConfig.LogGroup",
    );
}

#[test]
fn a_web_app_without_the_stacks_app_client_fails_the_check() {
    assert_template_defect_is_caught(
        "no-sign-in-client",
        altered(
            &template(),
            "LABELING_COGNITO_CLIENT_ID: !If [UseCognito, !Ref UserPoolClient, !Ref AWS::NoValue]",
            "LABELING_SIGN_IN: token",
        ),
        "ProjectsFunction serves the web app but its LABELING_COGNITO_CLIENT_ID does not name UserPoolClient",
    );
}

#[test]
fn an_uploads_queue_visible_again_before_six_refresh_timeouts_fails_the_check() {
    assert_template_defect_is_caught(
        "short-visibility",
        altered(
            &template(),
            "      QueueName: !Sub \"${AWS::StackName}-uploads\"\n      SqsManagedSseEnabled: true\n      VisibilityTimeout: 5400",
            "      QueueName: !Sub \"${AWS::StackName}-uploads\"\n      SqsManagedSseEnabled: true\n      VisibilityTimeout: 900",
        ),
        "UploadsQueue: VisibilityTimeout 900 is under 6x the Timeout 900 of RefreshFunction",
    );
}

#[test]
fn a_worker_ami_resolved_at_every_deploy_fails_the_check() {
    assert_template_defect_is_caught(
        "ssm-ami",
        altered(
            &template(),
            "    Type: String\n    Default: \"\"\n    AllowedPattern: \"^(ami-",
            "    Type: AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>\n    Default: \"\"\n    AllowedPattern: \"^(ami-",
        ),
        "parameter WorkerAmiId (AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>) is resolved at every deploy",
    );
}

#[test]
fn a_put_object_on_the_whole_bucket_fails_the_check() {
    assert_template_defect_is_caught(
        "put-anywhere",
        altered(&template(), r#""${Bucket}/datasets/*""#, r#""${Bucket}/*""#),
        "ProjectsFunction: s3:PutObject (DatasetUploads) on ${Bucket}/*",
    );
}

#[test]
fn a_kept_table_created_unconditionally_or_a_group_deleted_with_the_stack_fails_the_check() {
    assert_template_defect_is_caught(
        "table-always-created",
        altered(
            &template(),
            "    Type: AWS::DynamoDB::Table\n    Condition: CreateTable\n",
            "    Type: AWS::DynamoDB::Table\n",
        ),
        "Table is kept by `sam delete` but created unconditionally",
    );
    assert_template_defect_is_caught(
        "group-deleted",
        altered(
            &template(),
            "    DeletionPolicy: Retain\n    UpdateReplacePolicy: Retain\n    Properties:\n      GroupName: labelers\n",
            "    Properties:\n      GroupName: labelers\n",
        ),
        "LabelersGroup (AWS::Cognito::UserPoolGroup) is not kept when the stack is deleted",
    );
}

#[test]
fn missing_alarms_tracing_or_access_logs_fail_the_check() {
    assert_template_defect_is_caught(
        "no-5xx-alarm",
        altered(
            &template(),
            "      MetricName: 5xx\n",
            "      MetricName: 4xx\n",
        ),
        "HttpApi has no alarm on 5xx",
    );
    assert_template_defect_is_caught(
        "no-tracing",
        altered(&template(), "    Tracing: Active\n", ""),
        "ProjectsFunction has no X-Ray tracing",
    );
    assert_template_defect_is_caught(
        "no-access-logs",
        altered(
            &template(),
            "        DestinationArn: !GetAtt ApiAccessLogGroup.Arn\n",
            "",
        ),
        "HttpApi has no access logs",
    );
}

#[test]
fn an_unstripped_or_aborting_lambda_binary_fails_the_check() {
    let cargo = altered(
        &cargo_toml(),
        "[profile.release.package.labeling-fn-submit]\nstrip = \"debuginfo\"\n",
        "",
    );
    let cargo = altered(&cargo, "panic = \"unwind\"\n", "");
    let (passed, report) = check(
        Path::new(&format!("{ROOT}/template.yaml")),
        &fixture("Cargo.toml", &cargo),
        false,
    );
    assert!(!passed, "{report}");
    assert!(
        report.contains("SubmitFunction: its binary 'submit' ships unstripped"),
        "{report}"
    );
    assert!(
        report.contains("[profile.release] does not set panic"),
        "{report}"
    );
}

#[test]
fn the_deploy_instructions_need_no_beta_features() {
    // SAM CLI 1.170 builds rust-cargolambda functions without the flag (it is no longer an
    // experimental feature there).
    let readme = std::fs::read_to_string(format!("{ROOT}/README.md")).unwrap();
    assert!(!readme.contains("--beta-features"));
    assert!(!template().contains("--beta-features"));
}
