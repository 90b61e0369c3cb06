//! The web UI: one page and its assets, embedded in the binary (xterm.js vendored from npm with its licence,
//! `server/assets/vendor/`).

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

/// `(path, content type, bytes)` of every asset.
const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "/assets/app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/app.js"),
    ),
    (
        "/assets/app.css",
        "text/css; charset=utf-8",
        include_bytes!("../assets/app.css"),
    ),
    (
        "/assets/vendor/xterm.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/vendor/xterm.js"),
    ),
    (
        "/assets/vendor/xterm.css",
        "text/css; charset=utf-8",
        include_bytes!("../assets/vendor/xterm.css"),
    ),
    (
        "/assets/vendor/addon-fit.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/vendor/addon-fit.js"),
    ),
    (
        "/assets/vendor/LICENSE.xterm",
        "text/plain; charset=utf-8",
        include_bytes!("../assets/vendor/LICENSE.xterm"),
    ),
    (
        "/assets/vendor/LICENSE.addon-fit",
        "text/plain; charset=utf-8",
        include_bytes!("../assets/vendor/LICENSE.addon-fit"),
    ),
];

const INDEX: &[u8] = include_bytes!("../assets/index.html");

/// The page at `/` and its assets. The page holds no secret: it reads the token from its own URL. Scripts come
/// only from the daemon; styles may be inline because xterm.js writes its theme into a `<style>` element.
pub(crate) fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    let mut router = Router::new().route(
        "/",
        get(|| async {
            (
                [
                    (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                    (
                        header::CONTENT_SECURITY_POLICY,
                        "default-src 'self'; connect-src 'self'; style-src 'self' 'unsafe-inline'",
                    ),
                ],
                INDEX,
            )
                .into_response()
        }),
    );
    for &(path, content_type, bytes) in ASSETS {
        router =
            router.route(
                path,
                get(move || async move {
                    ([(header::CONTENT_TYPE, content_type)], bytes).into_response()
                }),
            );
    }
    router
}
