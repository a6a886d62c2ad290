//! Typed services for `messaging`: one Rust trait gives a typed client and a server adapter,
//! wire-compatible with oslo.messaging. Use them through the `messaging` facade (feature
//! `macros`, on by default): `#[messaging::service]`, `#[derive(messaging::RemoteException)]`,
//! `#[derive(messaging::Event)]`. The code they generate calls `messaging::typed`, where the
//! logic lives; see that module for what happens on the wire.
//!
//! Generated code names the facade (`::messaging`); code that depends on `messaging-core`
//! directly says so with `crate = "messaging_core"` in the attribute (`#[service(…)]`,
//! `#[remote(…)]`, `#[event(…)]`), as here:
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), messaging_core::MessagingError> {
//! use messaging_core::{get_rpc_transport, Context, RpcServer, Target};
//!
//! #[messaging_macros::service(crate = "messaging_core", namespace = "calc", version = "1.1")]
//! pub trait Calc {
//!     /// `a + b`; `b` defaults to 1 when left out.
//!     async fn add(&self, ctx: Context, a: i64, b: Option<i64>) -> i64;
//!     #[since = "1.1"]
//!     async fn reset(&self, ctx: Context);
//! }
//!
//! struct Adder;
//! impl Calc for Adder {
//!     async fn add(&self, _ctx: Context, a: i64, b: Option<i64>) -> i64 { a + b.unwrap_or(1) }
//!     async fn reset(&self, _ctx: Context) {}
//! }
//!
//! let rpc = get_rpc_transport("memory://").await?;
//! let server = RpcServer::new(rpc.clone(), Target::topic("calc").server("c1"))
//!     .endpoint(CalcServer::new(Adder))
//!     .start()
//!     .await?;
//! let calc = CalcClient::new(rpc, Target::topic("calc"));
//! assert_eq!(calc.add(&Context::new(), 41, None).await?, 42);
//! // `reset` is since 1.1: refused before sending under a 1.0 cap.
//! assert!(calc.prepare().version_cap("1.0").cast().reset(&Context::new()).await.is_err());
//! assert_eq!(CalcClient::SERVICE.method("reset").unwrap().since, "1.1");
//! server.shutdown().await;
//! # Ok(()) }
//! ```

use proc_macro::TokenStream;
use quote::ToTokens;
use syn::{Attribute, Expr, Lit, LitStr, Meta, Path, Type};

mod derive;
mod service;

/// Turn a trait of `async fn`s into a typed service: the trait (its futures `Send`), a client
/// `<Trait>Client`, a cast view `<Trait>Cast`, and a server adapter `<Trait>Server`.
///
/// Attribute arguments: `namespace = "…"` (the endpoint namespace), `version = "X.Y"` (the
/// version the server implements; default `1.0`), `crate = "…"` (the path of the messaging
/// crate; default `messaging`). On a method, `#[since = "X.Y"]` is the version that added it
/// (default `X.0`); it may not be newer than the service's version.
///
/// Every method takes `&self` and the request context (`ctx: Context`) first; its other
/// parameters are oslo keyword arguments named as in the trait (`Option<T>` ones may be left
/// out by callers). It returns `Result<T, E>` with `E: RemoteException` (its declared error),
/// or a plain `T` (no declared error).
#[proc_macro_attribute]
pub fn service(args: TokenStream, item: TokenStream) -> TokenStream {
    service::expand(args.into(), item.into())
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

/// Implement `messaging::typed::RemoteException`: a struct is one exception class named after
/// it, an enum one class per variant; named fields are the exception's keyword arguments and
/// `Display` its message. `#[remote(module = "nova.exception")]` sets the module sent to
/// Python (default: the Rust module path, dotted); `#[remote(class = "…")]` renames a struct's
/// or a variant's class.
#[proc_macro_derive(RemoteException, attributes(remote))]
pub fn derive_remote_exception(item: TokenStream) -> TokenStream {
    derive::remote_exception(syn::parse_macro_input!(item))
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

/// Implement `messaging::typed::Event`: `#[event(type = "scheduler.select.end")]`, with
/// `priority = "info"` (the default) or another of oslo's priorities.
#[proc_macro_derive(Event, attributes(event))]
pub fn derive_event(item: TokenStream) -> TokenStream {
    derive::event(syn::parse_macro_input!(item))
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

/// The messaging crate's path from a `crate = "…"` argument, or `::messaging`.
fn crate_path(given: Option<LitStr>) -> syn::Result<Path> {
    match given {
        Some(lit) => lit.parse(),
        None => Ok(syn::parse_quote!(::messaging)),
    }
}

/// An oslo `X.Y[.Z]` version, checked at compile time.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Version(u32, u32, u32);

impl Version {
    fn parse(lit: &LitStr) -> syn::Result<Self> {
        let text = lit.value();
        let parts: Result<Vec<u32>, _> = text.split('.').map(str::parse).collect();
        match parts.as_deref() {
            Ok([major, minor]) => Ok(Version(*major, *minor, 0)),
            Ok([major, minor, revision]) => Ok(Version(*major, *minor, *revision)),
            _ => Err(syn::Error::new(
                lit.span(),
                format!("invalid version `{text}`: expected X.Y or X.Y.Z"),
            )),
        }
    }

    fn text(self) -> String {
        match self {
            Version(major, minor, 0) => format!("{major}.{minor}"),
            Version(major, minor, revision) => format!("{major}.{minor}.{revision}"),
        }
    }
}

/// The `///` documentation of an item, one line per line.
fn doc_of(attrs: &[Attribute]) -> String {
    let lines: Vec<String> = attrs
        .iter()
        .filter(|a| a.path().is_ident("doc"))
        .filter_map(|a| match &a.meta {
            Meta::NameValue(nv) => match &nv.value {
                Expr::Lit(expr) => match &expr.lit {
                    Lit::Str(s) => Some(s.value().trim().to_owned()),
                    _ => None,
                },
                _ => None,
            },
            _ => None,
        })
        .collect();
    lines.join("\n").trim().to_owned()
}

/// The `T` of `Option<T>` (by its last path segment: `Option`, `std::option::Option`).
fn option_inner(ty: &Type) -> Option<&Type> {
    generic_args(ty, "Option").and_then(|args| match args.as_slice() {
        [inner] => Some(*inner),
        _ => None,
    })
}

/// The type arguments of `ty` if its last path segment is `name`.
fn generic_args<'a>(ty: &'a Type, name: &str) -> Option<Vec<&'a Type>> {
    let Type::Path(path) = ty else { return None };
    let last = path.path.segments.last()?;
    if last.ident != name {
        return None;
    }
    let syn::PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    Some(
        args.args
            .iter()
            .filter_map(|a| match a {
                syn::GenericArgument::Type(t) => Some(t),
                _ => None,
            })
            .collect(),
    )
}

/// An error at `tokens`.
fn error(tokens: impl ToTokens, message: impl std::fmt::Display) -> syn::Error {
    syn::Error::new_spanned(tokens, message)
}
