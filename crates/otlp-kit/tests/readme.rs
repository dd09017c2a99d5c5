//! The README's examples (compiled and run as doc tests of this crate) read as a user would write them: no
//! turbofish in any line a reader sees (hidden `# ` lines are doc-test scaffolding).

#[test]
fn readme_examples_need_no_turbofish() {
    let readme = include_str!("../../../README.md");
    let mut in_rust = false;
    let mut checked = 0;
    for (i, line) in readme.lines().enumerate() {
        if line.starts_with("```") {
            in_rust = line.starts_with("```rust");
            continue;
        }
        if in_rust && !line.trim_start().starts_with('#') {
            checked += 1;
            assert!(
                !line.contains("::<"),
                "README.md line {} needs a turbofish: {line}",
                i + 1
            );
        }
    }
    assert!(checked > 20, "no Rust example found in README.md");
}
