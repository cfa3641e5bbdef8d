//! The web UI at `/ui/`: one HTML page, its JavaScript modules (a router,
//! shared helpers, one module per page), stylesheets and an icon, embedded
//! in the binary. The page routes on the URL fragment (`#/services`,
//! `#/intentions`, `#/topology`, `#/peers`, ...) and talks only to the JSON
//! API on the same origin, so the server needs no routes beyond the assets.
//!
//! Every answer carries a strict Content-Security-Policy (nothing inline,
//! nothing from elsewhere), `nosniff`, and `Cache-Control: no-cache` with a
//! content-hash `ETag`, so a browser revalidates cheaply and never runs a
//! stale script after an upgrade.

use std::sync::LazyLock;

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use sha2::{Digest, Sha256};

/// Where the UI lives; `/` and `/ui` redirect here.
pub const PREFIX: &str = "/ui/";

/// `default-src 'self'` and nothing looser: no inline script or style, no
/// framing, no plugins, forms and `<base>` disabled.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; object-src 'none'; \
     base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

const ASSETS: &[Asset] = &[
    Asset {
        path: "/ui/",
        content_type: "text/html; charset=utf-8",
        body: include_bytes!("../../ui/index.html"),
    },
    Asset {
        path: "/ui/app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../ui/app.js"),
    },
    Asset {
        path: "/ui/core.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../ui/core.js"),
    },
    Asset {
        path: "/ui/peers.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../ui/peers.js"),
    },
    Asset {
        path: "/ui/services.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../ui/services.js"),
    },
    Asset {
        path: "/ui/intentions.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../ui/intentions.js"),
    },
    Asset {
        path: "/ui/topology.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../ui/topology.js"),
    },
    Asset {
        path: "/ui/app.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../../ui/app.css"),
    },
    Asset {
        path: "/ui/peers.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../../ui/peers.css"),
    },
    Asset {
        path: "/ui/services.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../../ui/services.css"),
    },
    Asset {
        path: "/ui/intentions.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../../ui/intentions.css"),
    },
    Asset {
        path: "/ui/topology.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../../ui/topology.css"),
    },
    Asset {
        path: "/ui/favicon.svg",
        content_type: "image/svg+xml",
        body: include_bytes!("../../ui/favicon.svg"),
    },
];

/// One strong ETag per asset, from its contents.
static ETAGS: LazyLock<Vec<HeaderValue>> = LazyLock::new(|| {
    ASSETS
        .iter()
        .map(|asset| {
            let digest = Sha256::digest(asset.body);
            let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
            HeaderValue::from_str(&format!("\"{hex}\"")).expect("hex is a valid header value")
        })
        .collect()
});

/// The UI's routes, merged into the API router.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    let mut router = Router::new()
        .route("/", get(|| async { Redirect::permanent(PREFIX) }))
        .route("/ui", get(|| async { Redirect::permanent(PREFIX) }));
    for (index, asset) in ASSETS.iter().enumerate() {
        router = router.route(
            asset.path,
            get(move |headers: HeaderMap| async move { serve(index, &headers) }),
        );
    }
    router
}

fn serve(index: usize, request: &HeaderMap) -> Response {
    let asset = &ASSETS[index];
    let etag = ETAGS[index].clone();
    let unchanged = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|tag| tag.trim() == etag));
    let mut response = if unchanged {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(asset.content_type),
            )],
            asset.body,
        )
            .into_response()
    };
    let headers = response.headers_mut();
    headers.insert(header::ETAG, etag);
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_is_embedded_and_the_page_references_only_local_files() {
        for asset in ASSETS {
            assert!(!asset.body.is_empty(), "{} is empty", asset.path);
        }
        let html = std::str::from_utf8(ASSETS[0].body).unwrap();
        for asset in ASSETS.iter().skip(1) {
            let file = asset.path.trim_start_matches("/ui/");
            let referenced = if file.ends_with(".js") && file != "app.js" {
                // Modules are imported by app.js, not named by the page.
                std::str::from_utf8(ASSETS[1].body)
                    .unwrap()
                    .contains(&format!("\"./{file}\""))
            } else {
                html.contains(asset.path)
            };
            assert!(referenced, "{} is served but nothing loads it", asset.path);
        }
        // The CSP forbids inline code; keep the page free of it.
        assert!(!html.contains("<script>"), "inline script in index.html");
        assert!(!html.contains("style="), "inline style in index.html");
        assert!(
            !html.contains("onclick="),
            "inline event handler in index.html"
        );
    }

    #[test]
    fn etags_differ_per_asset() {
        let mut tags: Vec<_> = ETAGS.iter().collect();
        tags.sort_by_key(|t| t.as_bytes().to_vec());
        tags.dedup();
        assert_eq!(tags.len(), ASSETS.len());
    }
}
