//! Tests of ingest.
//!
//! The bucket and the table are in-memory fakes. The table implements the
//! conditional writes the DynamoDB adapter documents, so these tests exercise
//! the same races the real stores see.

use tokio::sync::Notify;

use super::*;
use std::sync::Mutex;

use crate::catalog::item::is_item_id;
use crate::catalog::memory::{CatalogState, MemoryBucket, MemoryCatalog};
use crate::catalog::validate::content_hash;

const DEMO: &str = include_str!("../../tests/fixtures/catalog/valid/minimal-automated.yaml");

/// The demo item under another id and version.
fn item(id: &str, version: &str) -> String {
    DEMO.replace("id: demo-item", &format!("id: {id}"))
        .replace("version: 1.0.0", &format!("version: {version}"))
}

/// The demo item with `label` misspelt `labl` in its first field (line 14).
fn broken(id: &str) -> String {
    item(id, "1.0.1").replace("label: Name", "labl: Name")
}

// ---------------------------------------------------------------- stores

type Bucket = MemoryBucket;
type Table = MemoryCatalog;

/// Reading the table's state in assertions.
trait Inspect {
    fn published_now(&self, item_id: &str) -> Option<PublishedItem>;
    fn report_now(&self, item_id: &str) -> Option<ValidationReport>;
    fn item_of(&self, key: &str) -> Option<String>;
    fn published_ids(&self) -> Vec<String>;
}

impl Inspect for Table {
    fn published_now(&self, item_id: &str) -> Option<PublishedItem> {
        self.snapshot().published.get(item_id).cloned()
    }
    fn report_now(&self, item_id: &str) -> Option<ValidationReport> {
        self.snapshot().reports.get(item_id).cloned()
    }
    fn item_of(&self, key: &str) -> Option<String> {
        self.snapshot().sources.get(key).map(|(id, _)| id.clone())
    }
    fn published_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.snapshot().published.keys().cloned().collect();
        ids.sort();
        ids
    }
}

// ---------------------------------------------------------------- harness

struct Harness {
    bucket: Arc<Bucket>,
    table: Arc<Table>,
    ingest: Ingest,
}

fn harness() -> Harness {
    let bucket = Arc::new(Bucket::default());
    let table = Arc::new(Table::default());
    let ingest = Ingest::new(bucket.clone(), table.clone());
    Harness {
        bucket,
        table,
        ingest,
    }
}

impl Harness {
    /// Puts a file in the bucket and ingests its event.
    async fn upload(&self, key: &str, text: &str, modified: i64) -> Ingested {
        self.bucket.put(key, text, modified);
        self.sync(key).await
    }

    /// Deletes a file from the bucket and ingests its event.
    async fn delete(&self, key: &str) -> Ingested {
        self.bucket.delete(key);
        self.sync(key).await
    }

    async fn sync(&self, key: &str) -> Ingested {
        self.ingest.sync_key(key).await.unwrap()
    }
}

fn published(id: &str) -> Ingested {
    Ingested::Published {
        item_id: id.to_string(),
    }
}

fn unchanged(id: &str) -> Ingested {
    Ingested::Unchanged {
        item_id: id.to_string(),
    }
}

fn removed(id: Option<&str>) -> Ingested {
    Ingested::Removed {
        item_id: id.map(str::to_string),
    }
}

// ---------------------------------------------------------------- tests

#[tokio::test]
async fn a_valid_upload_is_published_with_a_valid_report() {
    let h = harness();
    let text = item("demo-item", "1.0.0");

    let outcome = h.upload("items/demo.yaml", &text, 100).await;

    assert_eq!(outcome, published("demo-item"));
    let live = h.table.published_now("demo-item").unwrap();
    assert_eq!(live.source_key, "items/demo.yaml");
    assert_eq!(live.source_modified, 100);
    assert_eq!(live.content_hash, content_hash(text.as_bytes()));
    assert_eq!(live.item.header.version, "1.0.0");
    let report = h.table.report_now("demo-item").unwrap();
    assert_eq!(report.status, ReportStatus::Valid);
    assert_eq!(report.source_key, "items/demo.yaml");
    assert_eq!(report.source_modified, 100);
    assert_eq!(report.content_hash, live.content_hash);
    assert!(report.errors.is_empty());
    assert_eq!(
        h.table.item_of("items/demo.yaml").as_deref(),
        Some("demo-item")
    );
}

#[tokio::test]
async fn an_invalid_upload_keeps_the_last_good_version_and_reports_located_errors() {
    let h = harness();
    let good = item("demo-item", "1.0.0");
    h.upload("items/demo.yaml", &good, 100).await;

    let outcome = h.upload("items/demo.yaml", &broken("demo-item"), 200).await;

    assert_eq!(
        outcome,
        Ingested::Rejected {
            item_id: Some("demo-item".to_string()),
            errors: 2
        }
    );
    let live = h.table.published_now("demo-item").unwrap();
    assert_eq!(live.content_hash, content_hash(good.as_bytes()));
    assert_eq!(live.source_modified, 100);
    let report = h.table.report_now("demo-item").unwrap();
    assert_eq!(report.status, ReportStatus::Invalid);
    assert_eq!(report.source_key, "items/demo.yaml");
    assert_eq!(report.source_modified, 200);
    assert_eq!(
        report.content_hash,
        content_hash(broken("demo-item").as_bytes())
    );
    let located: Vec<String> = report.errors.iter().map(ToString::to_string).collect();
    assert_eq!(
        located,
        [
            "items/demo.yaml:12:7: presentation.fields[0]: missing required key `label`",
            "items/demo.yaml:14:7: presentation.fields[0].labl: unknown key `labl` (did you mean `label`?)",
        ]
    );
}

#[tokio::test]
async fn an_invalid_first_upload_is_reported_under_the_id_it_claims_and_publishes_nothing() {
    let h = harness();

    let outcome = h.upload("items/new.yaml", &broken("new-item"), 100).await;

    assert_eq!(
        outcome,
        Ingested::Rejected {
            item_id: Some("new-item".to_string()),
            errors: 2
        }
    );
    assert!(h.table.published_ids().is_empty());
    let report = h.table.report_now("new-item").unwrap();
    assert_eq!(report.status, ReportStatus::Invalid);
    assert_eq!(report.source_key, "items/new.yaml");
    assert_eq!(report.errors.len(), 2);
    assert!(report.errors.iter().all(|e| e.file == "items/new.yaml"));
    assert_eq!(h.table.item_of("items/new.yaml"), None);
}

#[tokio::test]
async fn a_file_without_a_readable_id_is_reported_under_its_file_name() {
    let h = harness();

    let outcome = h
        .upload("items/Junk_File.yaml", "header: [unclosed", 100)
        .await;

    assert_eq!(
        outcome,
        Ingested::Rejected {
            item_id: Some("junk-file".to_string()),
            errors: 1
        }
    );
    assert!(h.table.published_ids().is_empty());
    let report = h.table.report_now("junk-file").unwrap();
    assert_eq!(report.status, ReportStatus::Invalid);
    assert_eq!(report.source_key, "items/Junk_File.yaml");
    assert_eq!(report.errors.len(), 1);
    assert_eq!(report.errors[0].file, "items/Junk_File.yaml");
    assert_eq!(report.errors[0].line, 1);
    assert_eq!(report.live, None);
    assert_eq!(
        report.summary,
        "The upload of items/Junk_File.yaml was refused (1 error); no version of `junk-file` is published."
    );
}

/// The demo item with a YAML syntax error on line 14 (an unclosed flow
/// sequence), so it cannot be parsed at all.
fn unparseable(id: &str) -> String {
    item(id, "2.0.0").replace("label: Name", "label: [Name")
}

#[tokio::test]
async fn an_unparseable_upload_is_reported_under_the_id_its_header_names() {
    let h = harness();

    let outcome = h
        .upload("items/other-name.yaml", &unparseable("new-item"), 100)
        .await;

    assert_eq!(
        outcome,
        Ingested::Rejected {
            item_id: Some("new-item".to_string()),
            errors: 1
        }
    );
    let report = h.table.report_now("new-item").unwrap();
    assert_eq!(report.status, ReportStatus::Invalid);
    assert_eq!(report.errors[0].file, "items/other-name.yaml");
    assert!(report.errors[0].line >= 14, "{:?}", report.errors[0]);
}

#[tokio::test]
async fn an_unparseable_replacement_of_a_published_item_says_which_version_stays_live() {
    let h = harness();
    let good = item("demo-item", "1.0.0");
    h.upload("items/demo.yaml", &good, 100).await;

    let outcome = h
        .upload("items/demo.yaml", &unparseable("demo-item"), 200)
        .await;

    assert_eq!(
        outcome,
        Ingested::Rejected {
            item_id: Some("demo-item".to_string()),
            errors: 1
        }
    );
    let live = h.table.published_now("demo-item").unwrap();
    assert_eq!(live.content_hash, content_hash(good.as_bytes()));
    let report = h.table.report_now("demo-item").unwrap();
    assert_eq!(report.status, ReportStatus::Invalid);
    assert_eq!(report.source_modified, 200);
    assert_eq!(
        report.content_hash,
        content_hash(unparseable("demo-item").as_bytes())
    );
    let kept = report.live.as_ref().unwrap();
    assert_eq!(kept.version, "1.0.0");
    assert_eq!(kept.content_hash, live.content_hash);
    assert!(
        report
            .summary
            .starts_with("The upload of items/demo.yaml was refused (1 error); `demo-item` version 1.0.0 from items/demo.yaml (published "),
        "{}",
        report.summary
    );
}

#[tokio::test]
async fn a_replacement_whose_id_cannot_be_read_is_reported_under_the_item_the_file_held() {
    let h = harness();
    h.upload("items/demo.yaml", &item("demo-item", "1.0.0"), 100)
        .await;

    let outcome = h.upload("items/demo.yaml", "\u{0}not: [yaml", 200).await;

    assert_eq!(
        outcome,
        Ingested::Rejected {
            item_id: Some("demo-item".to_string()),
            errors: 1
        }
    );
    let report = h.table.report_now("demo-item").unwrap();
    assert_eq!(report.status, ReportStatus::Invalid);
    assert_eq!(report.live.unwrap().version, "1.0.0");
}

#[tokio::test]
async fn bytes_that_are_not_utf8_are_reported_with_their_line() {
    let h = harness();
    let mut bytes = item("demo-item", "1.0.0").into_bytes();
    let at = bytes.len() - 10;
    bytes[at] = 0xff;
    h.bucket.put("items/demo.yaml", &bytes, 100);

    let outcome = h.sync("items/demo.yaml").await;

    assert!(
        matches!(outcome, Ingested::Rejected { item_id: Some(ref id), .. } if id == "demo-item")
    );
    let report = h.table.report_now("demo-item").unwrap();
    assert_eq!(report.errors[0].message, "the file is not valid UTF-8");
    assert!(report.errors[0].line > 1);
}

#[test]
fn the_header_id_is_read_from_text_that_does_not_parse() {
    let text = "# a comment\nheader:\n  name: x\n  access:\n    id: inner\n  id: \"my-item\" # why\npresentation: [\n";
    assert_eq!(header_id_line(text.as_bytes()).as_deref(), Some("my-item"));
    assert_eq!(header_id_line(b"other:\n  id: nope\n"), None);
    assert_eq!(
        header_id_line(b"header:\n  access:\n    id: deeper\n"),
        None
    );
}

#[test]
fn file_names_become_item_ids() {
    assert_eq!(id_from_key("items/My_Service.yaml"), "my-service");
    assert_eq!(id_from_key("a/b/eks-app-stack.yml"), "eks-app-stack");
    assert_eq!(id_from_key("items/--x--.yaml"), "x");
    assert_eq!(
        id_from_key("items/2024-db.yaml"),
        "file-2024-db",
        "an id starts with a letter"
    );
    assert_eq!(id_from_key("items/___.yaml"), id_of_key("items/___.yaml"));
    assert!(id_from_key(&format!("{}.yaml", "a".repeat(100))).len() <= 63);
    assert!(is_item_id(&id_of_key("items/___.yaml")));
}

#[tokio::test]
async fn a_report_under_a_name_made_id_never_replaces_another_files_report() {
    let h = harness();
    h.upload("teams/b/postgres.yaml", &item("postgres", "1.0.0"), 100)
        .await;

    let outcome = h
        .upload("teams/a/postgres.yaml", "header: [unclosed", 200)
        .await;

    let Ingested::Rejected {
        item_id: Some(filed),
        ..
    } = outcome
    else {
        panic!("{outcome:?}");
    };
    assert_ne!(filed, "postgres");
    assert_eq!(filed, id_of_key("teams/a/postgres.yaml"));
    assert_eq!(
        h.table.report_now("postgres").unwrap().source_key,
        "teams/b/postgres.yaml"
    );
    assert_eq!(
        h.table.report_now(&filed).unwrap().source_key,
        "teams/a/postgres.yaml"
    );
}

#[tokio::test]
async fn a_removed_file_unpublishes_its_item() {
    let h = harness();
    h.upload("items/demo.yaml", &item("demo-item", "1.0.0"), 100)
        .await;

    let outcome = h.delete("items/demo.yaml").await;

    assert_eq!(outcome, removed(Some("demo-item")));
    assert_eq!(h.table.published_now("demo-item"), None);
    assert_eq!(h.table.item_of("items/demo.yaml"), None);
}

#[tokio::test]
async fn removing_a_file_that_never_published_anything_is_harmless() {
    let h = harness();

    assert_eq!(h.delete("items/ghost.yaml").await, removed(None));
    assert_eq!(h.table.snapshot(), CatalogState::default());
}

#[tokio::test]
async fn a_replayed_event_for_an_unchanged_object_changes_nothing() {
    let h = harness();
    h.upload("items/demo.yaml", &item("demo-item", "1.0.0"), 100)
        .await;
    let before = h.table.snapshot();

    let outcome = h.sync("items/demo.yaml").await;

    assert_eq!(outcome, unchanged("demo-item"));
    assert_eq!(h.table.snapshot(), before);
}

#[tokio::test]
async fn a_late_publish_of_an_older_version_is_stale_and_keeps_the_newer() {
    let h = harness();
    h.upload("items/demo.yaml", &item("demo-item", "1.1.0"), 200)
        .await;
    let before = h.table.snapshot();

    // An invocation that read version 1.0.0 (modified at 100) publishes late.
    let outcome = h
        .upload("items/demo.yaml", &item("demo-item", "1.0.0"), 100)
        .await;

    assert_eq!(outcome, unchanged("demo-item"));
    let live = h.table.published_now("demo-item").unwrap();
    assert_eq!(live.item.header.version, "1.1.0");
    assert_eq!(live.source_modified, 200);
    assert_eq!(h.table.snapshot(), before);
}

#[tokio::test]
async fn a_second_file_claiming_a_published_id_is_rejected_naming_the_first() {
    let h = harness();
    h.upload("items/a.yaml", &item("demo-item", "1.0.0"), 100)
        .await;
    let copy = item("demo-item", "9.0.0");

    let outcome = h.upload("items/b.yaml", &copy, 200).await;

    assert_eq!(
        outcome,
        Ingested::Rejected {
            item_id: Some("demo-item".to_string()),
            errors: 1
        }
    );
    let live = h.table.published_now("demo-item").unwrap();
    assert_eq!(live.source_key, "items/a.yaml");
    assert_eq!(live.item.header.version, "1.0.0");
    let report = h.table.report_now("demo-item").unwrap();
    assert_eq!(report.status, ReportStatus::Invalid);
    assert_eq!(report.source_key, "items/b.yaml");
    assert_eq!(report.content_hash, content_hash(copy.as_bytes()));
    assert_eq!(
        report.errors,
        vec![Diagnostic {
            file: "items/b.yaml".to_string(),
            line: 3,
            column: 7,
            path: "header.id".to_string(),
            message: "item id `demo-item` is already used by items/a.yaml".to_string(),
        }]
    );
    assert_eq!(h.table.item_of("items/b.yaml"), None);
}

#[tokio::test]
async fn deleting_the_owner_publishes_the_file_that_was_refused() {
    let h = harness();
    h.upload("items/a.yaml", &item("demo-item", "1.0.0"), 100)
        .await;
    h.upload("items/b.yaml", &item("demo-item", "9.0.0"), 200)
        .await;

    let outcome = h.delete("items/a.yaml").await;

    assert_eq!(outcome, removed(Some("demo-item")));
    let live = h.table.published_now("demo-item").unwrap();
    assert_eq!(live.source_key, "items/b.yaml");
    assert_eq!(live.item.header.version, "9.0.0");
    let report = h.table.report_now("demo-item").unwrap();
    assert_eq!(report.status, ReportStatus::Valid);
    assert_eq!(report.source_key, "items/b.yaml");
    assert_eq!(h.table.item_of("items/a.yaml"), None);
    assert_eq!(
        h.table.item_of("items/b.yaml").as_deref(),
        Some("demo-item")
    );
}

#[tokio::test]
async fn a_renamed_file_takes_over_its_id_before_the_old_name_is_ingested() {
    let h = harness();
    h.upload("items/old.yaml", &item("demo-item", "1.0.0"), 100)
        .await;
    // The rename: the old object is gone, but its delete event has not run.
    h.bucket.delete("items/old.yaml");

    let outcome = h
        .upload("items/new.yaml", &item("demo-item", "1.0.0"), 200)
        .await;

    assert_eq!(outcome, published("demo-item"));
    assert_eq!(
        h.table.published_now("demo-item").unwrap().source_key,
        "items/new.yaml"
    );
    assert_eq!(h.table.item_of("items/old.yaml"), None);
    assert_eq!(
        h.table.item_of("items/new.yaml").as_deref(),
        Some("demo-item")
    );

    // The old name's delete event arrives late and takes nothing with it.
    assert_eq!(h.sync("items/old.yaml").await, removed(None));
    assert_eq!(
        h.table.published_now("demo-item").unwrap().source_key,
        "items/new.yaml"
    );
}

#[tokio::test]
async fn a_file_whose_item_id_changes_unpublishes_the_old_id() {
    let h = harness();
    h.upload("items/a.yaml", &item("demo-item", "1.0.0"), 100)
        .await;

    let outcome = h
        .upload("items/a.yaml", &item("renamed-item", "1.0.0"), 200)
        .await;

    assert_eq!(outcome, published("renamed-item"));
    assert_eq!(h.table.published_ids(), ["renamed-item"]);
    assert_eq!(
        h.table.item_of("items/a.yaml").as_deref(),
        Some("renamed-item")
    );
}

#[tokio::test]
async fn keys_that_are_not_yaml_are_ignored() {
    let h = harness();
    for key in ["README.md", "items/demo.json", "items/yaml"] {
        assert_eq!(h.upload(key, DEMO, 100).await, Ingested::Ignored, "{key}");
    }
    assert_eq!(h.table.snapshot(), CatalogState::default());

    assert_eq!(
        h.upload("items/demo.yml", DEMO, 100).await,
        published("demo-item")
    );
}

#[tokio::test]
async fn rebuild_publishes_every_file_and_unpublishes_items_whose_file_is_gone() {
    let h = harness();
    h.upload("items/gone.yaml", &item("gone-item", "1.0.0"), 50)
        .await;
    // Changes whose events were lost.
    h.bucket.delete("items/gone.yaml");
    h.bucket
        .put("items/a.yaml", item("demo-item", "1.0.0"), 100);
    h.bucket
        .put("items/b.yaml", item("other-item", "1.0.0"), 100);
    h.bucket.put("items/notes.txt", "not an item", 100);

    let outcomes = h.ingest.rebuild().await.unwrap();

    assert_eq!(
        outcomes,
        vec![
            ("items/a.yaml".to_string(), published("demo-item")),
            ("items/b.yaml".to_string(), published("other-item")),
            ("items/gone.yaml".to_string(), removed(Some("gone-item"))),
        ]
    );
    assert_eq!(h.table.published_ids(), ["demo-item", "other-item"]);
    assert_eq!(h.table.item_of("items/gone.yaml"), None);

    // A second rebuild finds nothing to do.
    let again = h.ingest.rebuild().await.unwrap();
    assert_eq!(
        again,
        vec![
            ("items/a.yaml".to_string(), unchanged("demo-item")),
            ("items/b.yaml".to_string(), unchanged("other-item")),
        ]
    );
}

#[tokio::test]
async fn an_oversized_object_is_rejected_and_the_published_version_stays() {
    let h = harness();
    let good = item("demo-item", "1.0.0");
    h.upload("items/demo.yaml", &good, 100).await;
    // Still a valid item, padded with a comment past the size limit.
    let max = source::Limits::default().max_bytes;
    let huge = format!("{}# {}\n", item("demo-item", "2.0.0"), "x".repeat(max));

    let outcome = h.upload("items/demo.yaml", &huge, 200).await;

    assert_eq!(
        outcome,
        Ingested::Rejected {
            item_id: Some("demo-item".to_string()),
            errors: 1
        }
    );
    let report = h.table.report_now("demo-item").unwrap();
    assert!(
        report.errors[0]
            .message
            .contains("a catalog item may be at most 262144 bytes"),
        "{}",
        report.errors[0].message
    );
    assert_eq!(report.live.as_ref().unwrap().version, "1.0.0");
    let live = h.table.published_now("demo-item").unwrap();
    assert_eq!(live.content_hash, content_hash(good.as_bytes()));
    assert_eq!(live.item.header.version, "1.0.0");
}

#[tokio::test]
async fn sync_event_ingests_every_key_the_notification_names() {
    let h = harness();
    h.bucket
        .put("items/a.yaml", item("demo-item", "1.0.0"), 100);
    h.bucket
        .put("items/b c.yaml", item("other-item", "1.0.0"), 100);
    let event: S3Notification = serde_json::from_value(serde_json::json!({
        "Records": [
            {"eventName": "ObjectCreated:Put", "s3": {"object": {"key": "items/a.yaml"}}},
            {"eventName": "ObjectCreated:Put", "s3": {"object": {"key": "items/b+c.yaml"}}}
        ]
    }))
    .unwrap();

    let outcomes = h.ingest.sync_event(&event).await.unwrap();

    assert_eq!(
        outcomes,
        vec![published("demo-item"), published("other-item")]
    );
    assert_eq!(h.table.published_ids(), ["demo-item", "other-item"]);
}

#[tokio::test]
async fn a_store_failure_is_an_error() {
    let h = harness();
    h.bucket
        .put("items/a.yaml", item("demo-item", "1.0.0"), 100);
    h.table.fail_with(Some(StoreError::Unavailable(
        "table unreachable".to_string(),
    )));

    let key = h.ingest.sync_key("items/a.yaml").await;
    assert!(matches!(key, Err(StoreError::Unavailable(_))), "{key:?}");
    let event: S3Notification = serde_json::from_value(
        serde_json::json!({"Records": [{"s3": {"object": {"key": "items/a.yaml"}}}]}),
    )
    .unwrap();
    let event = h.ingest.sync_event(&event).await;
    assert!(
        matches!(event, Err(StoreError::Unavailable(_))),
        "{event:?}"
    );
    let rebuild = h.ingest.rebuild().await;
    assert!(
        matches!(rebuild, Err(StoreError::Unavailable(_))),
        "{rebuild:?}"
    );

    h.table.fail_with(None);
    assert_eq!(h.table.snapshot(), CatalogState::default());
}

// ------------------------------------------------- races and recoveries

/// A bucket whose first read of `key` returns `stale`, and only once
/// `release` is notified: an invocation that read an old version, then
/// stalled while another invocation ingested the new one.
struct StalledRead {
    bucket: Arc<Bucket>,
    key: String,
    stale: Mutex<Option<SourceObject>>,
    release: Notify,
}

#[async_trait]
impl CatalogSource for StalledRead {
    async fn fetch(&self, key: &str, max_bytes: usize) -> Result<Option<SourceObject>, StoreError> {
        if key == self.key {
            let stale = self.stale.lock().unwrap().take();
            if let Some(stale) = stale {
                self.release.notified().await;
                return Ok(Some(stale));
            }
        }
        self.bucket.fetch(key, max_bytes).await
    }

    async fn keys(&self) -> Result<Vec<String>, StoreError> {
        self.bucket.keys().await
    }
}

/// `items/a.yaml` holds `demo-item`@100, then is overwritten with
/// `renamed-item`@200. Invocation A (the first event) read the old bytes and
/// stalled; invocation B (the second event) ingests the new bytes to the
/// end; then A resumes.
async fn rename_racing_a_stalled_read() -> Harness {
    let h = harness();
    let old = item("demo-item", "1.0.0");
    h.upload("items/a.yaml", &old, 100).await;
    h.bucket
        .put("items/a.yaml", item("renamed-item", "2.0.0"), 200);
    let (_, fresh) = race_a_stalled_read(&h, old, 100).await;
    assert_eq!(fresh.unwrap(), published("renamed-item"));
    h
}

/// Ingests `items/a.yaml` twice at once: a late invocation that read `stale`
/// (modified at `modified`) and stalls until a fresh one, reading the
/// bucket, has finished. Answers (late, fresh).
async fn race_a_stalled_read(
    h: &Harness,
    stale: String,
    modified: i64,
) -> (Result<Ingested, StoreError>, Result<Ingested, StoreError>) {
    let stalled = Arc::new(StalledRead {
        bucket: h.bucket.clone(),
        key: "items/a.yaml".to_string(),
        stale: Mutex::new(Some(SourceObject {
            bytes: stale.into_bytes(),
            modified,
        })),
        release: Notify::new(),
    });
    let late = Ingest::new(stalled.clone(), h.table.clone());
    tokio::join!(late.sync_key("items/a.yaml"), async {
        let outcome = h.ingest.sync_key("items/a.yaml").await;
        stalled.release.notify_one();
        outcome
    })
}

#[tokio::test]
async fn a_late_read_of_an_older_version_with_another_id_does_not_bring_that_id_back() {
    let h = rename_racing_a_stalled_read().await;

    assert_eq!(h.table.published_ids(), ["renamed-item"]);
}

#[tokio::test]
async fn rebuild_unpublishes_every_item_whose_file_is_gone() {
    let h = rename_racing_a_stalled_read().await;
    h.delete("items/a.yaml").await;

    h.ingest.rebuild().await.unwrap();

    assert_eq!(h.table.published_ids(), Vec::<String>::new());
}

#[tokio::test]
async fn reverting_a_file_to_its_published_content_clears_the_invalid_report() {
    let h = harness();
    let good = item("demo-item", "1.0.0");
    h.upload("items/demo.yaml", &good, 100).await;
    h.upload("items/demo.yaml", &broken("demo-item"), 200).await;

    let outcome = h.upload("items/demo.yaml", &good, 300).await;

    assert_eq!(outcome, unchanged("demo-item"));
    let report = h.table.report_now("demo-item").unwrap();
    assert_eq!(report.status, ReportStatus::Valid);
    assert_eq!(report.source_modified, 300);
}

#[tokio::test]
async fn a_refused_file_older_than_the_owner_takes_over_when_the_owner_is_deleted() {
    let h = harness();
    // b.yaml was uploaded first (100), but S3 delivered a.yaml's event (200) first.
    h.bucket
        .put("items/b.yaml", item("demo-item", "9.0.0"), 100);
    h.upload("items/a.yaml", &item("demo-item", "1.0.0"), 200)
        .await;
    let refused = h.sync("items/b.yaml").await;
    assert!(matches!(refused, Ingested::Rejected { .. }), "{refused:?}");

    h.delete("items/a.yaml").await;

    let live = h.table.published_now("demo-item");
    assert_eq!(live.map(|p| p.source_key).as_deref(), Some("items/b.yaml"));
}

#[tokio::test]
async fn an_older_version_of_the_same_second_published_last_is_replaced_by_the_current_one() {
    let h = harness();
    let old = item("demo-item", "1.0.0");
    let new = item("demo-item", "1.1.0");
    h.upload("items/a.yaml", &old, 100).await;
    // Overwritten within the same second: S3 times have whole seconds.
    h.bucket.put("items/a.yaml", new.clone(), 100);
    let (late, _) = race_a_stalled_read(&h, old, 100).await;
    late.unwrap();
    let published = h.table.published_now("demo-item").unwrap();
    assert_eq!(published.item.header.version, "1.1.0");
    assert_eq!(published.content_hash, content_hash(new.as_bytes()));
}

#[tokio::test]
async fn a_delete_event_arriving_after_the_file_was_uploaded_again_keeps_it() {
    let h = harness();
    h.upload("items/a.yaml", &item("demo-item", "1.0.0"), 100)
        .await;
    // The delete event's invocation saw no object, then the file came back
    // (and its own event was handled) before it unpublished.
    let removed = h
        .ingest
        .remove("items/a.yaml", Some("demo-item".to_string()))
        .await
        .unwrap();
    assert_ne!(
        removed,
        Ingested::Removed {
            item_id: Some("demo-item".to_string())
        }
    );
    assert_eq!(h.table.published_ids(), ["demo-item"]);
    assert_eq!(
        h.table.item_of("items/a.yaml").as_deref(),
        Some("demo-item")
    );
}

#[test]
fn a_set_digest_is_order_free_and_removing_a_pair_undoes_adding_it() {
    let empty = SetDigest::default();
    let ab = empty.toggle("a", "sha256:1").toggle("b", "sha256:2");
    let ba = empty.toggle("b", "sha256:2").toggle("a", "sha256:1");
    assert_eq!(ab, ba);
    assert_ne!(ab, empty);
    assert_eq!(ab.toggle("a", "sha256:1").toggle("b", "sha256:2"), empty);
    // Another version of the same item is another pair.
    assert_ne!(empty.toggle("a", "sha256:1"), empty.toggle("a", "sha256:3"));
    assert_eq!(SetDigest::from_hex(&ab.to_hex()), Some(ab));
}

#[tokio::test]
async fn every_publish_and_unpublish_moves_the_generation_and_its_digest_with_it() {
    let h = harness();
    h.upload("items/a.yaml", &item("item-a", "1.0.0"), 100)
        .await;
    h.upload("items/b.yaml", &item("item-b", "1.0.0"), 100)
        .await;
    h.upload("items/a.yaml", &item("item-a", "1.1.0"), 200)
        .await;
    h.delete("items/b.yaml").await;

    let generation = h.table.generation().await.unwrap();
    assert_eq!(generation.number, 4);
    let published: Vec<PublishedItem> = h.table.snapshot().published.into_values().collect();
    assert_eq!(generation.digest, SetDigest::of(&published));
}

#[tokio::test]
async fn rebuild_keeps_an_item_whose_file_was_uploaded_after_the_listing() {
    let h = harness();
    h.upload("items/a.yaml", &item("item-a", "1.0.0"), 100)
        .await;
    // The listing a rebuild took before `b` was uploaded and published.
    struct Listed(Arc<MemoryBucket>);
    #[async_trait]
    impl CatalogSource for Listed {
        async fn fetch(&self, key: &str, max: usize) -> Result<Option<SourceObject>, StoreError> {
            self.0.fetch(key, max).await
        }
        async fn keys(&self) -> Result<Vec<String>, StoreError> {
            Ok(vec!["items/a.yaml".to_string()])
        }
    }
    h.upload("items/b.yaml", &item("item-b", "1.0.0"), 100)
        .await;
    let rebuild = Ingest::new(Arc::new(Listed(h.bucket.clone())), h.table.clone());

    rebuild.rebuild().await.unwrap();

    assert_eq!(h.table.published_ids(), ["item-a", "item-b"]);
}
