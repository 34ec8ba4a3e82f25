//! Listening: HTTPS with rustls (a configured certificate, or a self-signed
//! one generated on first start and kept in the data directory) or plain
//! HTTP for loopback benchmarks; CORS locked to configured origins.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::http::{HeaderValue, Method};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::gateway::Gateway;

#[derive(Clone, Debug)]
pub enum Tls {
    /// Plain HTTP (loopback tests and benchmarks only).
    Off,
    /// A self-signed certificate for localhost in this directory, generated on first start.
    SelfSigned(PathBuf),
    Files {
        cert: PathBuf,
        key: PathBuf,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("binding {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("engine link: {0}")]
    Link(#[from] castle_link::LinkError),
}

/// CORS locked to the configured origins, run only for the requests CORS
/// is about (see [`CorsWhenAsked`]).
pub fn cors(origins: &[String]) -> CorsWhenAskedLayer {
    CorsWhenAskedLayer(cors_rules(origins))
}

/// The CORS rules (tower-http's layer).
pub fn cors_rules(origins: &[String]) -> CorsLayer {
    let list: Vec<HeaderValue> = origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()).collect();
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(list))
        .allow_methods([Method::GET, Method::POST, Method::DELETE])
        .allow_headers([
            axum::http::header::CONTENT_TYPE,
            axum::http::header::AUTHORIZATION,
            "x-api-key".parse().expect("static"),
            "x-timestamp".parse().expect("static"),
            "x-signature".parse().expect("static"),
            "x-recv-window".parse().expect("static"),
        ])
}

/// What tower-http's CORS layer adds to a response when the request has no
/// `Origin` (its default `Vary` list, which tells caches that the answer
/// depends on these request headers).
pub const VARY_CORS: HeaderValue =
    HeaderValue::from_static("origin, access-control-request-method, access-control-request-headers");

/// Layer of [`CorsWhenAsked`].
#[derive(Clone)]
pub struct CorsWhenAskedLayer(CorsLayer);

impl<S> tower::Layer<S> for CorsWhenAskedLayer {
    type Service = CorsWhenAsked<S>;
    fn layer(&self, inner: S) -> Self::Service {
        CorsWhenAsked { cors: self.0.layer(inner) }
    }
}

/// tower-http's CORS for requests with an `Origin` header and for
/// preflights (OPTIONS); any other request goes straight to the route and
/// its response gets the same `Vary` header tower-http would add. The
/// answers are the same as with tower-http's layer on every request, but a
/// request without `Origin` (API clients, the order path) no longer pays
/// for building a header map and the `Vary` value on every call (about 5k
/// instructions per order in the profile).
#[derive(Clone)]
pub struct CorsWhenAsked<S> {
    /// The route inside is called directly for requests without `Origin`.
    cors: tower_http::cors::Cors<S>,
}

impl<S, B, ResBody> tower::Service<axum::http::Request<B>> for CorsWhenAsked<S>
where
    S: tower::Service<axum::http::Request<B>, Response = axum::http::Response<ResBody>>,
    ResBody: Default,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = futures_util::future::Either<
        tower_http::cors::ResponseFuture<S::Future>,
        futures_util::future::MapOk<S::Future, fn(S::Response) -> S::Response>,
    >;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        // Readiness of the route inside (for both paths).
        self.cors.poll_ready(cx)
    }

    fn call(&mut self, req: axum::http::Request<B>) -> Self::Future {
        use futures_util::TryFutureExt;
        if req.method() == Method::OPTIONS || req.headers().contains_key(axum::http::header::ORIGIN) {
            return futures_util::future::Either::Left(self.cors.call(req));
        }
        fn vary<R>(mut r: axum::http::Response<R>) -> axum::http::Response<R> {
            r.headers_mut().append(axum::http::header::VARY, VARY_CORS);
            r
        }
        futures_util::future::Either::Right(
            self.cors.get_mut().call(req).map_ok(vary::<ResBody> as fn(S::Response) -> S::Response),
        )
    }
}

/// The self-signed localhost certificate and key in `dir` (generated when missing).
pub fn self_signed(dir: &Path) -> Result<(PathBuf, PathBuf), ServeError> {
    let cert = dir.join("rest-cert.pem");
    let key = dir.join("rest-key.pem");
    if cert.exists() && key.exists() {
        return Ok((cert, key));
    }
    std::fs::create_dir_all(dir).map_err(|e| ServeError::Tls(format!("{}: {e}", dir.display())))?;
    let c = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into(), "::1".into()])
        .map_err(|e| ServeError::Tls(e.to_string()))?;
    std::fs::write(&cert, c.cert.pem()).map_err(|e| ServeError::Tls(e.to_string()))?;
    // The private key: owner-only.
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&key)
        .map_err(|e| ServeError::Tls(e.to_string()))?;
    f.write_all(c.key_pair.serialize_pem().as_bytes()).map_err(|e| ServeError::Tls(e.to_string()))?;
    tracing::info!(cert = %cert.display(), "generated a self-signed certificate for the REST gateway");
    Ok((cert, key))
}

/// The rustls server configuration for a PEM certificate chain and key.
pub fn rustls_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, ServeError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| ServeError::Tls(format!("{}: {e}", cert.display())))?
        .collect::<Result<_, _>>()
        .map_err(|e| ServeError::Tls(format!("{}: {e}", cert.display())))?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| ServeError::Tls(format!("{}: {e}", key.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut sc = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ServeError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| ServeError::Tls(e.to_string()))?;
    sc.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(sc))
}

/// A running REST gateway.
pub struct RestServer {
    pub addr: SocketAddr,
    pub tls: bool,
    handle: axum_server::Handle,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl RestServer {
    pub fn url(&self) -> String {
        format!("{}://{}", if self.tls { "https" } else { "http" }, self.addr)
    }

    pub async fn shutdown(self) {
        self.handle.shutdown();
        for t in self.tasks {
            t.abort();
            let _ = t.await;
        }
    }
}

/// Starts the stream consumer and the listener. Must run inside tokio.
pub async fn serve(gw: Arc<Gateway>, listen: SocketAddr, tls: Tls) -> Result<RestServer, ServeError> {
    let stream = gw.start_stream()?;
    let listener = std::net::TcpListener::bind(listen).map_err(|e| ServeError::Bind(listen, e))?;
    listener.set_nonblocking(true).map_err(|e| ServeError::Bind(listen, e))?;
    let addr = listener.local_addr().map_err(|e| ServeError::Bind(listen, e))?;
    let app = crate::routes::router(gw).into_make_service_with_connect_info::<SocketAddr>();
    let handle = axum_server::Handle::new();
    let (task, is_tls) = match tls {
        Tls::Off => {
            let server = axum_server::from_tcp(listener).handle(handle.clone());
            (
                tokio::spawn(async move {
                    if let Err(e) = server.serve(app).await {
                        tracing::error!(%e, "REST listener stopped");
                    }
                }),
                false,
            )
        }
        Tls::SelfSigned(_) | Tls::Files { .. } => {
            let (cert, key) = match tls {
                Tls::SelfSigned(dir) => self_signed(&dir)?,
                Tls::Files { cert, key } => (cert, key),
                Tls::Off => unreachable!(),
            };
            let cfg = axum_server::tls_rustls::RustlsConfig::from_config(rustls_config(&cert, &key)?);
            let server = axum_server::from_tcp_rustls(listener, cfg).handle(handle.clone());
            (
                tokio::spawn(async move {
                    if let Err(e) = server.serve(app).await {
                        tracing::error!(%e, "REST listener stopped");
                    }
                }),
                true,
            )
        }
    };
    Ok(RestServer { addr, tls: is_tls, handle, tasks: vec![stream, task] })
}
