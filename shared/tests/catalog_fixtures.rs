//! Every validation rule has a fixture in `fixtures/catalog/invalid/`: a file
//! breaking that one rule, beside the exact located messages it must produce
//! (`<name>.expected`). The example catalog and `fixtures/catalog/valid/`
//! must pass.

use std::path::{Path, PathBuf};

use pao::catalog::validate::{validate_catalog, validate_file};

fn fixtures(folder: &str, extension: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(folder);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|err| panic!("{}: {err}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == extension))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no fixtures in {}", dir.display());
    files
}

fn name(path: &Path) -> String {
    path.file_name().unwrap().to_string_lossy().into_owned()
}

#[test]
fn every_invalid_fixture_gives_its_exact_located_messages() {
    let mut mismatches = Vec::new();
    for path in fixtures("tests/fixtures/catalog/invalid", "yaml") {
        let bytes = std::fs::read(&path).unwrap();
        let diagnostics = validate_file(&name(&path), &bytes)
            .expect_err(&format!("{} must be invalid", name(&path)));
        let actual: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
        let expected_file = path.with_extension("expected");
        let expected = std::fs::read_to_string(&expected_file)
            .unwrap_or_else(|_| panic!("{} is missing", expected_file.display()));
        let expected: Vec<&str> = expected.lines().collect();
        if actual != expected {
            mismatches.push(format!(
                "{}:\n  expected: {expected:#?}\n  actual:   {actual:#?}",
                name(&path)
            ));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

#[test]
fn the_example_catalog_and_valid_fixtures_pass() {
    let mut files = fixtures("../catalog/items", "yaml");
    files.extend(fixtures("tests/fixtures/catalog/valid", "yaml"));
    for path in files {
        let bytes = std::fs::read(&path).unwrap();
        if let Err(diagnostics) = validate_file(&name(&path), &bytes) {
            let lines: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
            panic!("{} is invalid:\n{}", path.display(), lines.join("\n"));
        }
    }
}

#[test]
fn an_item_id_used_twice_in_a_catalog_is_an_error_in_the_later_file() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/catalog/valid/minimal-automated.yaml");
    let bytes = std::fs::read(path).unwrap();
    let report = validate_catalog([("a.yaml", bytes.as_slice()), ("b.yaml", bytes.as_slice())]);
    assert_eq!(report.items.len(), 1);
    let messages: Vec<String> = report.diagnostics.iter().map(ToString::to_string).collect();
    assert_eq!(
        messages,
        ["b.yaml:3:7: header.id: item id `demo-item` is already used by a.yaml"]
    );
}

#[test]
fn a_file_over_the_size_limit_is_refused_with_a_clear_message() {
    let mut bytes = b"schema_version: 2\n# ".to_vec();
    bytes.extend(std::iter::repeat_n(b'x', 300 * 1024));
    let diagnostics = validate_file("big.yaml", &bytes).unwrap_err();
    assert_eq!(
        diagnostics[0].to_string(),
        format!(
            "big.yaml:1:1: the file is {} bytes; a catalog item may be at most 262144 bytes",
            bytes.len()
        )
    );
}

#[test]
fn every_example_form_is_a_valid_2020_12_schema_that_accepts_its_defaults_shape() {
    for path in fixtures("../catalog/items", "yaml") {
        let bytes = std::fs::read(&path).unwrap();
        let item = validate_file(&name(&path), &bytes).unwrap().item;
        let form = pao::catalog::form::form(&item);
        jsonschema::draft202012::meta::validate(&form.schema)
            .unwrap_or_else(|err| panic!("{}: not a 2020-12 schema: {err}", path.display()));
        let validator = jsonschema::draft202012::new(&form.schema)
            .unwrap_or_else(|err| panic!("{}: does not compile: {err}", path.display()));
        // An empty submission is refused exactly when the form has required fields.
        let required = form.schema["required"]
            .as_array()
            .is_some_and(|r| !r.is_empty());
        assert_eq!(
            validator.is_valid(&serde_json::json!({})),
            !required,
            "{}",
            path.display()
        );
    }
}
