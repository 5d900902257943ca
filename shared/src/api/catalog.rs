//! The catalog API: browse the published catalog, an item, its form, its
//! last validation report, and (admins) rebuild the index from the bucket.
//! Items restricted to groups are invisible — 404, not 403 — to others.
//!
//! Reads are served from an in-process copy of the catalog that is checked
//! against the catalog's generation on every request (one small consistent
//! read), and a copy is kept only when its digest is the generation's, so
//! it is exactly one generation of the catalog. No instance ever answers
//! from a catalog older than one another instance has already answered
//! from: an item that was served never goes back to 404, and the list and
//! the item routes always agree.

use std::sync::{Arc, RwLock};

use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, RequestExt, Response};
use serde::Serialize;
use serde_json::{json, Value};

use super::{json, route_key, ApiError};
use crate::auth::{self, AuthMode, Principal};
use crate::catalog::form::form;
use crate::catalog::index::{
    CatalogSource, CatalogStore, Generation, Ingest, Ingested, PublishedItem, SetDigest,
};
use crate::catalog::item::{is_item_id, CatalogItem, Mode};
use crate::config::CatalogConfig;

/// The longest text search accepted.
const MAX_QUERY_CHARS: usize = 200;

pub struct CatalogApi {
    store: Arc<dyn CatalogStore>,
    ingest: Ingest,
    cache: Cache,
    auth: AuthMode,
    admin_group: String,
}

/// Reads of the whole catalog made while it kept changing, before one is
/// served uncached.
const SNAPSHOT_ATTEMPTS: usize = 3;

/// The published catalog as it was at one generation.
#[derive(Default)]
struct Cache {
    entry: RwLock<Option<(u64, Arc<Vec<PublishedItem>>)>>,
}

impl Cache {
    fn at(&self, generation: u64) -> Option<Arc<Vec<PublishedItem>>> {
        let entry = self.entry.read().ok()?;
        let (cached, items) = entry.as_ref()?;
        (*cached == generation).then(|| Arc::clone(items))
    }

    fn put(&self, generation: u64, items: Arc<Vec<PublishedItem>>) {
        if let Ok(mut entry) = self.entry.write() {
            // Two requests may race to fill it: the newer generation stays.
            if entry
                .as_ref()
                .is_none_or(|(cached, _)| *cached <= generation)
            {
                *entry = Some((generation, items));
            }
        }
    }
}

/// An item in a list.
#[derive(Serialize)]
struct Summary<'a> {
    id: &'a str,
    name: &'a str,
    version: &'a str,
    category: &'a str,
    description: &'a str,
    owner: &'a str,
    tags: &'a [String],
    mode: Mode,
}

impl<'a> Summary<'a> {
    fn of(item: &'a CatalogItem) -> Self {
        let header = &item.header;
        Self {
            id: &header.id,
            name: &header.name,
            version: &header.version,
            category: &header.category,
            description: &header.description,
            owner: &header.owner,
            tags: &header.tags,
            mode: item.fulfillment.mode,
        }
    }
}

impl CatalogApi {
    pub fn new(
        store: Arc<dyn CatalogStore>,
        source: Arc<dyn CatalogSource>,
        auth: AuthMode,
        config: &CatalogConfig,
    ) -> Self {
        Self {
            ingest: Ingest::new(source, Arc::clone(&store)),
            store,
            cache: Cache::default(),
            auth,
            admin_group: config.admin_group.clone(),
        }
    }

    pub async fn handle(&self, req: Request) -> Response<Body> {
        match self.route(&req).await {
            Ok(response) => response,
            Err(err) => err.into_response(),
        }
    }

    async fn route(&self, req: &Request) -> Result<Response<Body>, ApiError> {
        let caller = auth::principal(req, self.auth).ok_or_else(ApiError::unauthenticated)?;
        let param = |name: &str| {
            req.path_parameters_ref()
                .and_then(|params| params.first(name))
                .unwrap_or_default()
                .to_string()
        };
        match route_key(req) {
            Some("GET /api/v1/catalog") => self.list(&caller, req).await,
            Some("GET /api/v1/catalog/{category}") => {
                self.category(&caller, &param("category")).await
            }
            Some("GET /api/v1/catalog/items/{item_id}") => {
                self.item(&caller, &param("item_id")).await
            }
            Some("GET /api/v1/catalog/items/{item_id}/schema") => {
                self.schema(&caller, &param("item_id")).await
            }
            Some("GET /api/v1/catalog/validation/{item_id}") => {
                self.report(&caller, &param("item_id")).await
            }
            Some("POST /api/v1/catalog/refresh") => self.refresh(&caller).await,
            _ => Err(ApiError::no_route(req)),
        }
    }

    fn visible(&self, caller: &Principal, item: &CatalogItem) -> bool {
        item.visible_to(caller, &self.admin_group)
    }

    /// The catalog as of now: the cached copy while its generation is
    /// current, else a fresh read, kept when it is exactly that generation.
    async fn catalog(&self) -> Result<Arc<Vec<PublishedItem>>, ApiError> {
        let mut generation = self.store.generation().await?;
        for attempt in 1..=SNAPSHOT_ATTEMPTS {
            if let Some(items) = self.cache.at(generation.number) {
                return Ok(items);
            }
            let mut items = self.store.published().await?;
            items.sort_by(|a, b| a.item.header.id.cmp(&b.item.header.id));
            let items = Arc::new(items);
            if self.is_exactly(generation, &items).await? {
                self.cache.put(generation.number, Arc::clone(&items));
                return Ok(items);
            }
            if attempt == SNAPSHOT_ATTEMPTS {
                // Changing without pause: this read holds everything
                // published before it began, which is all a later read by
                // any instance can be compared with. It is not kept.
                tracing::info!(
                    generation = generation.number,
                    "catalog changing during reads; served uncached"
                );
                return Ok(items);
            }
            generation = self.store.generation().await?;
        }
        unreachable!("the last attempt returns")
    }

    /// Whether `items` is the catalog at `generation`: its digest says so,
    /// or, for a catalog no change has written a generation for yet, the
    /// generation is still none after the read.
    async fn is_exactly(
        &self,
        generation: Generation,
        items: &[PublishedItem],
    ) -> Result<bool, ApiError> {
        if generation.number > 0 {
            return Ok(SetDigest::of(items) == generation.digest);
        }
        Ok(self.store.generation().await?.number == 0)
    }

    async fn find(&self, caller: &Principal, item_id: &str) -> Result<PublishedItem, ApiError> {
        self.catalog()
            .await?
            .iter()
            .find(|published| published.item.header.id == item_id)
            .filter(|published| self.visible(caller, &published.item))
            .cloned()
            .ok_or_else(|| ApiError::not_found(format!("no catalog item `{item_id}`")))
    }

    async fn list(&self, caller: &Principal, req: &Request) -> Result<Response<Body>, ApiError> {
        let query = req.query_string_parameters_ref();
        let get = |name: &str| {
            query
                .and_then(|q| q.first(name))
                .map(str::trim)
                .filter(|v| !v.is_empty())
        };
        // The limit counts `q` as sent, before it is trimmed or lowercased.
        let sent = query.and_then(|q| q.first("q")).unwrap_or_default();
        if sent.chars().count() > MAX_QUERY_CHARS {
            return Err(ApiError::bad_request(format!(
                "q may be at most {MAX_QUERY_CHARS} characters"
            )));
        }
        let text = get("q").map(str::to_lowercase);
        let (category, tag) = (get("category"), get("tag"));
        let catalog = self.catalog().await?;
        let matching: Vec<Summary> = catalog
            .iter()
            .map(|published| &published.item)
            .filter(|item| self.visible(caller, item))
            .filter(|item| category.is_none_or(|c| item.header.category == c))
            .filter(|item| tag.is_none_or(|t| item.header.tags.iter().any(|x| x == t)))
            .filter(|item| text.as_deref().is_none_or(|t| matches_text(item, t)))
            .map(Summary::of)
            .collect();
        Ok(json(
            StatusCode::OK,
            &json!({"count": matching.len(), "items": matching}),
        ))
    }

    async fn category(
        &self,
        caller: &Principal,
        category: &str,
    ) -> Result<Response<Body>, ApiError> {
        let catalog = self.catalog().await?;
        let matching: Vec<Summary> = catalog
            .iter()
            .map(|published| &published.item)
            .filter(|item| self.visible(caller, item))
            .filter(|item| item.header.category == category)
            .map(Summary::of)
            .collect();
        if matching.is_empty() {
            return Err(ApiError::not_found(format!(
                "no catalog category `{category}`"
            )));
        }
        Ok(json(
            StatusCode::OK,
            &json!({"category": category, "count": matching.len(), "items": matching}),
        ))
    }

    async fn item(&self, caller: &Principal, item_id: &str) -> Result<Response<Body>, ApiError> {
        let published = self.find(caller, item_id).await?;
        let item = &published.item;
        // Developers see what they fill in and the steps that will run, not
        // the actions' configuration (internal URLs, env names).
        let actions: Vec<Value> = item
            .actions()
            .iter()
            .map(|a| json!({"id": a.id, "type": a.kind, "depends_on": a.depends_on}))
            .collect();
        Ok(json(
            StatusCode::OK,
            &json!({
                "id": item.header.id,
                "version": item.header.version,
                "content_hash": published.content_hash,
                "published_at": published.published_at,
                "header": item.header,
                "presentation": item.presentation,
                "fulfillment": {"mode": item.fulfillment.mode, "actions": actions},
            }),
        ))
    }

    async fn schema(&self, caller: &Principal, item_id: &str) -> Result<Response<Body>, ApiError> {
        let published = self.find(caller, item_id).await?;
        let form = form(&published.item);
        Ok(json(
            StatusCode::OK,
            &json!({
                "item_id": item_id,
                "version": published.item.header.version,
                "schema": form.schema,
                "uiSchema": form.ui_schema,
            }),
        ))
    }

    /// The report of a published item follows the item's access rule,
    /// checked against the store rather than the cache (an item restricted a
    /// moment ago stays hidden). The report of an item with no published
    /// version (never valid, or deleted) names no groups to check, and its
    /// errors quote the file: it is for admins, and the team's CI has the
    /// same messages from `pao catalog validate` before it uploads.
    async fn report(&self, caller: &Principal, item_id: &str) -> Result<Response<Body>, ApiError> {
        let visible = is_item_id(item_id)
            && (caller.in_group(&self.admin_group)
                || self
                    .store
                    .published_item(item_id)
                    .await?
                    .is_some_and(|p| self.visible(caller, &p.item)));
        let report = if visible {
            self.store.report(item_id).await?
        } else {
            None
        };
        match report {
            Some(report) => Ok(json(StatusCode::OK, &report)),
            None => Err(ApiError::not_found(format!(
                "no validation report for `{item_id}`"
            ))),
        }
    }

    async fn refresh(&self, caller: &Principal) -> Result<Response<Body>, ApiError> {
        if !caller.in_group(&self.admin_group) {
            return Err(ApiError::forbidden(format!(
                "refreshing the catalog is for members of `{}`",
                self.admin_group
            )));
        }
        let outcomes = self.ingest.rebuild().await?;
        let count =
            |wanted: fn(&Ingested) -> bool| outcomes.iter().filter(|(_, o)| wanted(o)).count();
        let results: Vec<Value> = outcomes
            .iter()
            .map(|(key, outcome)| {
                let mut entry = serde_json::to_value(outcome).unwrap_or_default();
                entry["key"] = Value::from(key.as_str());
                entry
            })
            .collect();
        tracing::info!(admin = %caller.email, files = outcomes.len(), "catalog rebuilt");
        Ok(json(
            StatusCode::OK,
            &json!({
                "published": count(|o| matches!(o, Ingested::Published { .. })),
                "unchanged": count(|o| matches!(o, Ingested::Unchanged { .. })),
                "rejected": count(|o| matches!(o, Ingested::Rejected { .. })),
                "removed": count(|o| matches!(o, Ingested::Removed { .. })),
                "results": results,
            }),
        ))
    }
}

fn matches_text(item: &CatalogItem, text: &str) -> bool {
    let header = &item.header;
    [
        &header.id,
        &header.name,
        &header.description,
        &header.category,
    ]
    .iter()
    .any(|field| field.to_lowercase().contains(text))
        || header
            .tags
            .iter()
            .any(|tag| tag.to_lowercase().contains(text))
}

#[cfg(test)]
#[path = "catalog_tests.rs"]
mod tests;
