//! CloudFormation templates of the workspace read as CloudFormation reads them: cfn-lint's
//! decoder (from the tools virtualenv that `make lint` uses) turns the short-form tags into JSON
//! (intrinsics as `{"Ref": …}`, `{"Fn::If": …}`).

use std::process::Command;

use serde_json::Value;

/// `file` (relative to the workspace root) as JSON; panics naming what is missing.
pub fn decode(file: &str) -> Value {
    let root = crate::workspace_root();
    let python = root.join(".venv-tools/bin/python");
    assert!(
        python.exists(),
        "{} is missing: `make tools-venv` installs cfn-lint",
        python.display()
    );
    let out = Command::new(&python)
        .current_dir(&root)
        .args([
            "-c",
            "import json, sys\n\
             from cfnlint.decode import decode\n\
             t, problems = decode(sys.argv[1])\n\
             assert not problems, problems\n\
             json.dump(t, sys.stdout)",
            file,
        ])
        .output()
        .expect("the tools virtualenv's python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON")
}
