//! The deployment files in docker/, which no container engine here can run: their
//! structure (tests/tools/check_deploy.py), the flowgate configs they carry (`flowgate
//! validate`), and the alert rules (promtool).

use crate::support::{flowgate, python_with_cefp, repo};
use std::process::Command;

fn assert_ok(what: &str, out: std::process::Output) {
    assert!(
        out.status.success(),
        "{what}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn deployment_files_are_consistent_and_their_configs_validate() {
    let Some(python) = python_with_cefp() else {
        return;
    };
    let root = repo();
    let out = Command::new(&python)
        .arg(root.join("tests/tools/check_deploy.py"))
        .output()
        .unwrap();
    assert_ok("check_deploy.py", out);

    let demo = root.join("docker/demo/flowgate.toml");
    assert_ok(
        "validate docker/demo/flowgate.toml",
        flowgate(&["validate", "--config", demo.to_str().unwrap()], None),
    );
    // The Kubernetes ConfigMap's flowgate.toml.
    let dir = tempfile::tempdir().unwrap();
    let extracted = dir.path().join("flowgate.toml");
    let out = Command::new(&python)
        .args([
            "-c",
            "import sys, yaml\nfor d in yaml.safe_load_all(open(sys.argv[1])):\n    if d and d.get('kind') == 'ConfigMap':\n        open(sys.argv[2], 'w').write(d['data']['flowgate.toml'])",
        ])
        .arg(root.join("docker/k8s/flowgate-sidecar.yaml"))
        .arg(&extracted)
        .output()
        .unwrap();
    assert_ok("extract the ConfigMap", out);
    assert_ok(
        "validate the ConfigMap's flowgate.toml",
        flowgate(&["validate", "--config", extracted.to_str().unwrap()], None),
    );
}

#[test]
fn alert_rules_pass_promtool_and_their_unit_tests() {
    let Some((_, promtool)) = crate::operations::prometheus_bins() else {
        return;
    };
    let rules = repo().join("docker/prometheus");
    let out = Command::new(&promtool)
        .args(["check", "rules"])
        .arg(rules.join("flowgate-alerts.yaml"))
        .output()
        .unwrap();
    assert_ok("promtool check rules", out);
    let out = Command::new(&promtool)
        .args(["test", "rules"])
        .arg(rules.join("flowgate-alerts.test.yaml"))
        .current_dir(&rules)
        .output()
        .unwrap();
    assert_ok("promtool test rules", out);
}
