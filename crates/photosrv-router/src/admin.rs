//! The admin listener: metrics, expvar-compatible vars, health, routing introspection and
//! migration switching.

use crate::table::{MigrationState, RingTable, ShardTable};
use crate::{Router, SwitchError};
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use serde_json::{json, Value};
use std::sync::atomic::Ordering;

fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

fn text(status: StatusCode, body: impl Into<String>) -> Response<Full<Bytes>> {
    let mut body = body.into();
    body.push('\n');
    respond(status, "text/plain; charset=utf-8", body)
}

fn json_response(status: StatusCode, value: &Value) -> Response<Full<Bytes>> {
    let mut body = serde_json::to_vec_pretty(value).unwrap_or_default();
    body.push(b'\n');
    respond(status, "application/json", body)
}

/// The value of `name` in a query string, percent-decoded.
fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then(|| {
            let v = v.replace('+', " ");
            let bytes = photosrv_placement::path::percent_decode(v.as_bytes())
                .unwrap_or_else(|_| v.clone().into_bytes());
            String::from_utf8_lossy(&bytes).into_owned()
        })
    })
}

/// A shard's configured nodes, each with whether the roster lists it and whether it is
/// ejected.
fn nodes_json(shard: &ShardTable) -> Vec<Value> {
    shard
        .configured
        .iter()
        .map(|n| {
            json!({
                "url": n.addr.url,
                "live": shard.live.iter().any(|l| std::sync::Arc::ptr_eq(l, n)),
                "ejected": n.is_ejected(),
            })
        })
        .collect()
}

fn ring_json(ring: &RingTable) -> Value {
    json!({
        "datacenter": ring.datacenter,
        "chooser": ring.chooser.kind().name(),
        "shards": ring.shards.iter().map(|s| json!({"name": s.name, "nodes": nodes_json(s)})).collect::<Vec<_>>(),
    })
}

impl Router {
    /// Answers one admin request.
    pub async fn admin(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        let path = request.uri().path();
        let query = request.uri().query();
        let method = request.method();
        if let Some(action) = path.strip_prefix("/migration/") {
            let target = match action {
                "start" => MigrationState::Both,
                "abort" => MigrationState::Old,
                "finish" => MigrationState::New,
                _ => {
                    return text(
                        StatusCode::NOT_FOUND,
                        "unknown migration action: expected start, abort or finish",
                    )
                }
            };
            if method != Method::POST {
                let mut response = text(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "migration switching needs POST",
                );
                response
                    .headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static("POST"));
                return response;
            }
            let key = query_param(query, "key");
            return match self.switch_migration(target, key.as_deref()) {
                Ok(was) => text(
                    StatusCode::OK,
                    format!(
                        "currentMigrationState = {} (was {})",
                        target.go_name(),
                        was.go_name()
                    ),
                ),
                Err(e @ (SwitchError::Disabled | SwitchError::BadKey)) => text(
                    StatusCode::FORBIDDEN,
                    format!("unable to switch to {}: {e}", target.go_name()),
                ),
                Err(e @ SwitchError::NoMigrationRing(_)) => {
                    text(StatusCode::CONFLICT, e.to_string())
                }
                Err(e @ SwitchError::Persist { .. }) => {
                    text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
                }
            };
        }
        if method != Method::GET && method != Method::HEAD {
            let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD");
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return response;
        }
        let table = self.table();
        match path {
            "/metrics" => {
                let mut body = String::new();
                if prometheus_client::encoding::text::encode(&mut body, &self.inner.registry)
                    .is_err()
                {
                    return text(StatusCode::INTERNAL_SERVER_ERROR, "cannot encode metrics");
                }
                respond(
                    StatusCode::OK,
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    body,
                )
            }
            "/debug/vars" => {
                let (primary, migration) = table.missing_shards();
                let inner = &self.inner;
                json_response(
                    StatusCode::OK,
                    &json!({
                        "cmdline": std::env::args().collect::<Vec<_>>(),
                        "Requests": inner.go_requests.load(Ordering::Relaxed),
                        "Errors": inner.go_errors.load(Ordering::Relaxed),
                        "MultiHeadTimeout": inner.metrics.multihead_timeouts.get(),
                        "MissingShards": { "Primary": primary, "Migration": migration },
                        "MigrationState": self.migration_state().go_name(),
                        "BuildVersion": env!("CARGO_PKG_VERSION"),
                    }),
                )
            }
            "/live" => text(StatusCode::OK, "ok"),
            "/ready" => {
                let (primary, migration) = table.missing_shards();
                let state = self.migration_state();
                let mut missing: Vec<String> = Vec::new();
                if state != MigrationState::New || table.migration.is_none() {
                    missing.extend(primary.iter().map(|s| format!("primary {s}")));
                }
                if state != MigrationState::Old {
                    missing.extend(migration.iter().map(|s| format!("migration {s}")));
                }
                if missing.is_empty() {
                    text(StatusCode::OK, "ready")
                } else {
                    text(
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!("not ready: no live node in {}", missing.join(", ")),
                    )
                }
            }
            "/route" => {
                let Some(key) = query_param(query, "key") else {
                    return text(StatusCode::BAD_REQUEST, "expected /route?key=KEY");
                };
                let target = if key.starts_with('/') {
                    key.clone()
                } else {
                    format!("/{key}")
                };
                let mut encoded = String::new();
                photosrv_placement::path::encode_path(target.as_bytes(), &mut encoded);
                let state = self.migration_state();
                let key_bytes = match photosrv_placement::path::routing_key(
                    encoded.as_bytes(),
                    &table.rewriter,
                ) {
                    Ok(k) => k,
                    Err(e) => return text(StatusCode::BAD_REQUEST, format!("{key}: {e}")),
                };
                let describe = |label: &str, ring: &RingTable| {
                    let shard = ring.shard_of(&key_bytes);
                    json!({
                        "ring": label,
                        "datacenter": ring.datacenter,
                        "shard": shard.name,
                        "nodes": nodes_json(shard),
                    })
                };
                let mut rings = vec![describe("primary", &table.primary)];
                if let Some(m) = &table.migration {
                    rings.push(describe("migration", m));
                }
                json_response(
                    StatusCode::OK,
                    &json!({
                        "key": String::from_utf8_lossy(&key_bytes),
                        "migration_state": state.go_name(),
                        "rings": rings,
                    }),
                )
            }
            "/config" => json_response(
                StatusCode::OK,
                &json!({
                    "primary": ring_json(&table.primary),
                    "migration": table.migration.as_ref().map(ring_json),
                    "rewrites": table.rewriter.rules().iter().map(|r| json!({"from": r.from, "to": r.to})).collect::<Vec<_>>(),
                    "roster_hosts": table.roster_hosts,
                    "migration_state": self.migration_state().go_name(),
                }),
            ),
            _ => text(
                StatusCode::NOT_FOUND,
                "not found: try /metrics, /debug/vars, /live, /ready, /route?key=, /config",
            ),
        }
    }
}
