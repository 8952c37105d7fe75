//! template.yaml: cfn-lint reports no error, and every route of the OpenAPI document (except
//! the local server's own) is routed by API Gateway to a function, and nothing else is.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[test]
fn the_sam_template_lints_clean_and_routes_every_api_operation() {
    let python = std::env::var("LABELING_CFN_PYTHON")
        .expect("LABELING_CFN_PYTHON is not set: run ./infra/test.sh, or eval \"$(./infra/python-env.sh)\" first");
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let output = std::process::Command::new(python)
        .arg(format!("{root}/infra/check_template.py"))
        .current_dir(root)
        .output()
        .unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{report}");
    assert!(report.contains("cfn-lint: no errors"), "{report}");
    assert!(report.contains("OK"), "{report}");
}
