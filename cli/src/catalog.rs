//! `pao catalog validate` and `pao catalog schema`.

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};

use pao::catalog::form::form;
use pao::catalog::validate::{validate_file, CatalogReport, Diagnostic, ValidItem};

use crate::Format;

pub fn validate(paths: &[PathBuf], format: Format) -> ExitCode {
    let files = match collect(paths) {
        Ok(files) => files,
        Err(message) => return usage_error(&message),
    };
    let mut report = CatalogReport::default();
    for ((name, bytes), outcome) in files.iter().zip(validate_each(&files)) {
        report.add(name, bytes, outcome);
    }
    match format {
        Format::Json => {
            let body = serde_json::json!({
                "valid": report.diagnostics.is_empty(),
                "files": files.len(),
                "items": report.items.iter().map(|(file, valid)| serde_json::json!({
                    "file": file,
                    "id": valid.item.header.id,
                    "version": valid.item.header.version,
                    "content_hash": valid.content_hash,
                })).collect::<Vec<_>>(),
                "errors": report.diagnostics,
            });
            println!("{body:#}");
        }
        Format::Human => {
            for diagnostic in &report.diagnostics {
                eprintln!("{diagnostic}");
            }
            let failing: std::collections::BTreeSet<&str> =
                report.diagnostics.iter().map(|d| d.file.as_str()).collect();
            if report.diagnostics.is_empty() {
                eprintln!("{} catalog item(s) valid", report.items.len());
            } else {
                eprintln!(
                    "{} error(s) in {} of {} file(s)",
                    report.diagnostics.len(),
                    failing.len(),
                    files.len()
                );
            }
        }
    }
    if report.diagnostics.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

pub fn schema(file: &Path) -> ExitCode {
    let bytes = match std::fs::read(file) {
        Ok(bytes) => bytes,
        Err(err) => return usage_error(&format!("cannot read {}: {err}", file.display())),
    };
    match validate_file(&file.display().to_string(), &bytes) {
        Ok(valid) => {
            let form = form(&valid.item);
            println!("{:#}", serde_json::to_value(&form).unwrap_or_default());
            ExitCode::SUCCESS
        }
        Err(diagnostics) => {
            for diagnostic in diagnostics {
                eprintln!("{diagnostic}");
            }
            ExitCode::from(1)
        }
    }
}

/// Each file validated on its own, on as many threads as this process may
/// use (one under `taskset -c 0`); the outcomes come back in the files'
/// order, so the report does not depend on which thread finished first.
fn validate_each(files: &[(String, Vec<u8>)]) -> Vec<Result<ValidItem, Vec<Diagnostic>>> {
    let threads = std::thread::available_parallelism()
        .map_or(1, NonZeroUsize::get)
        .min(files.len());
    if threads <= 1 {
        return files
            .iter()
            .map(|(name, bytes)| validate_file(name, bytes))
            .collect();
    }
    // Files differ in size: each thread takes the next file not yet taken.
    let next = AtomicUsize::new(0);
    let mut outcomes: Vec<(usize, Result<ValidItem, Vec<Diagnostic>>)> =
        std::thread::scope(|scope| {
            let workers: Vec<_> = (0..threads)
                .map(|_| {
                    scope.spawn(|| {
                        let mut done = Vec::new();
                        loop {
                            let index = next.fetch_add(1, Ordering::Relaxed);
                            let Some((name, bytes)) = files.get(index) else {
                                return done;
                            };
                            done.push((index, validate_file(name, bytes)));
                        }
                    })
                })
                .collect();
            workers
                .into_iter()
                .flat_map(|worker| match worker.join() {
                    Ok(done) => done,
                    Err(panic) => std::panic::resume_unwind(panic),
                })
                .collect()
        });
    outcomes.sort_by_key(|(index, _)| *index);
    outcomes.into_iter().map(|(_, outcome)| outcome).collect()
}

fn usage_error(message: &str) -> ExitCode {
    eprintln!("pao: {message}");
    ExitCode::from(2)
}

/// The files named, and the YAML files under the folders named, sorted so
/// that "already used by" always names the same file.
fn collect(paths: &[PathBuf]) -> Result<Vec<(String, Vec<u8>)>, String> {
    let mut found = Vec::new();
    for path in paths {
        walk(path, true, &mut found)?;
    }
    found.sort();
    found.dedup();
    found
        .into_iter()
        .map(|path| {
            std::fs::read(&path)
                .map(|bytes| (path.display().to_string(), bytes))
                .map_err(|err| format!("cannot read {}: {err}", path.display()))
        })
        .collect()
}

fn walk(path: &Path, named: bool, found: &mut Vec<PathBuf>) -> Result<(), String> {
    let metadata =
        std::fs::metadata(path).map_err(|err| format!("cannot read {}: {err}", path.display()))?;
    if metadata.is_dir() {
        let entries = std::fs::read_dir(path)
            .map_err(|err| format!("cannot read {}: {err}", path.display()))?;
        for entry in entries {
            let entry = entry.map_err(|err| format!("cannot read {}: {err}", path.display()))?;
            walk(&entry.path(), false, found)?;
        }
    } else if named
        || matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml")
        )
    {
        found.push(path.to_path_buf());
    }
    Ok(())
}
