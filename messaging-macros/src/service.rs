//! `#[service]`: one trait in, the trait, a typed client, a cast view and a server adapter out.

use proc_macro2::{Ident, TokenStream};
use quote::{format_ident, quote};
use syn::ext::IdentExt;
use syn::{FnArg, ItemTrait, LitStr, Pat, Path, ReturnType, TraitItem, TraitItemFn, Type};

use crate::{crate_path, doc_of, error, generic_args, option_inner, Version};

/// Client builder methods the typed client forwards to `RpcClient`: a service method may not
/// take one of these names (nor those of the client's own items).
const RESERVED: &[&str] = &[
    "new",
    "prepare",
    "rpc_client",
    "cast",
    "fanout",
    "timeout",
    "no_timeout",
    "call_monitor_timeout",
    "version_cap",
    "retry",
    "server",
    "topic",
    "exchange",
    "serializer",
];

/// The attribute's arguments.
struct ServiceArgs {
    namespace: Option<LitStr>,
    version: Version,
    krate: Path,
}

/// A keyword parameter: its Rust name, its name on the wire, its type.
struct Param {
    ident: Ident,
    key: String,
    ty: Type,
}

/// One method of the trait.
struct Method {
    name: Ident,
    doc: String,
    since: Version,
    params: Vec<Param>,
    /// The result type and the declared error type, if any.
    ok: Type,
    err: Option<Type>,
}

pub fn expand(args: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    let args = parse_args(args)?;
    let mut item: ItemTrait = syn::parse2(item)?;
    if !item.generics.params.is_empty() {
        return Err(error(
            &item.generics,
            "a typed service trait cannot be generic",
        ));
    }
    let mut methods = Vec::new();
    for trait_item in &mut item.items {
        let TraitItem::Fn(function) = trait_item else {
            return Err(error(
                trait_item,
                "a typed service trait holds only `async fn` methods",
            ));
        };
        methods.push(method(function, &args)?);
        make_send(function);
    }
    item.supertraits
        .push(syn::parse_quote!(::core::marker::Send));
    item.supertraits
        .push(syn::parse_quote!(::core::marker::Sync));
    item.supertraits.push(syn::parse_quote!('static));
    let client = client(&item, &methods, &args);
    let server = server(&item, &methods, &args);
    Ok(quote! { #item #client #server })
}

fn parse_args(tokens: TokenStream) -> syn::Result<ServiceArgs> {
    let (mut namespace, mut version, mut krate) = (None, None, None);
    let parser = syn::meta::parser(|meta| {
        let value: LitStr = meta.value()?.parse()?;
        if meta.path.is_ident("namespace") {
            namespace = Some(value);
        } else if meta.path.is_ident("version") {
            version = Some(Version::parse(&value)?);
        } else if meta.path.is_ident("crate") {
            krate = Some(value);
        } else {
            return Err(meta.error("unknown argument: expected `namespace`, `version` or `crate`"));
        }
        Ok(())
    });
    syn::parse::Parser::parse2(parser, tokens)?;
    Ok(ServiceArgs {
        namespace,
        version: version.unwrap_or(Version(1, 0, 0)),
        krate: crate_path(krate)?,
    })
}

/// Read one method, removing its `#[since]` attribute.
fn method(function: &mut TraitItemFn, args: &ServiceArgs) -> syn::Result<Method> {
    check_shape(function)?;
    let since = take_since(function, args)?;
    let sig = &function.sig;
    let (ok, err) = result_types(&sig.output);
    Ok(Method {
        name: sig.ident.clone(),
        doc: doc_of(&function.attrs),
        since,
        params: params(sig)?,
        ok,
        err,
    })
}

/// An `async fn` without generics or body, whose name oslo can dispatch and the client can
/// take.
fn check_shape(function: &TraitItemFn) -> syn::Result<()> {
    let sig = &function.sig;
    let name = sig.ident.to_string();
    let problem = if sig.asyncness.is_none() {
        "typed service methods are `async fn`".to_owned()
    } else if function.default.is_some() {
        "typed service methods have no default body".to_owned()
    } else if !sig.generics.params.is_empty() {
        "typed service methods cannot be generic".to_owned()
    } else if name.starts_with('_') {
        "oslo never dispatches methods whose name starts with `_`".to_owned()
    } else if RESERVED.contains(&name.as_str()) {
        format!("`{name}` is a method of the typed client; rename this service method")
    } else {
        return Ok(());
    };
    Err(error(&sig.ident, problem))
}

/// The keyword parameters, after `&self` and the context.
fn params(sig: &syn::Signature) -> syn::Result<Vec<Param>> {
    let mut inputs = sig.inputs.iter();
    let by_ref = |r: &syn::Receiver| r.reference.is_some() && r.mutability.is_none();
    if !matches!(inputs.next(), Some(FnArg::Receiver(r)) if by_ref(r)) {
        return Err(error(
            &sig.ident,
            "typed service methods take `&self` first",
        ));
    }
    if !matches!(inputs.next(), Some(FnArg::Typed(ctx)) if is_context(&ctx.ty)) {
        return Err(error(
            &sig.ident,
            "typed service methods take the request context (`ctx: Context`) after `&self`",
        ));
    }
    inputs.map(param).collect()
}

/// The method's `#[since = "X.Y"]`, checked against the service version, then removed.
fn take_since(function: &mut TraitItemFn, args: &ServiceArgs) -> syn::Result<Version> {
    let mut since = Version(args.version.0, 0, 0);
    let mut error_found = None;
    function.attrs.retain(|attr| {
        if !attr.path().is_ident("since") {
            return true;
        }
        let parsed = attr
            .meta
            .require_name_value()
            .and_then(|nv| match &nv.value {
                syn::Expr::Lit(syn::ExprLit { lit: syn::Lit::Str(s), .. }) => Ok(s.clone()),
                other => Err(error(other, "expected `#[since = \"X.Y\"]`")),
            })
            .and_then(|lit| Ok((Version::parse(&lit)?, lit)));
        match parsed {
            Ok((version, lit)) => {
                if version.0 != args.version.0 || version > args.version {
                    error_found = Some(error(
                        &lit,
                        format!(
                            "`{}` is since version {}, newer than the service's version {}: raise the service version",
                            function.sig.ident,
                            version.text(),
                            args.version.text()
                        ),
                    ));
                }
                since = version;
            }
            Err(e) => error_found = Some(e),
        }
        false
    });
    match error_found {
        Some(e) => Err(e),
        None => Ok(since),
    }
}

fn is_context(ty: &Type) -> bool {
    matches!(ty, Type::Path(p) if p.path.segments.last().is_some_and(|s| s.ident == "Context"))
}

fn param(arg: &FnArg) -> syn::Result<Param> {
    let FnArg::Typed(typed) = arg else {
        return Err(error(arg, "unexpected receiver"));
    };
    match &*typed.pat {
        Pat::Ident(pat) if pat.by_ref.is_none() && pat.subpat.is_none() => Ok(Param {
            ident: pat.ident.clone(),
            key: pat.ident.unraw().to_string(),
            ty: (*typed.ty).clone(),
        }),
        other => Err(error(
            other,
            "parameters are named: their names are the keyword arguments on the wire",
        )),
    }
}

/// `Result<T, E>` is a result `T` with the declared error `E`; anything else is a plain result.
fn result_types(output: &ReturnType) -> (Type, Option<Type>) {
    let ty: Type = match output {
        ReturnType::Default => syn::parse_quote!(()),
        ReturnType::Type(_, ty) => (**ty).clone(),
    };
    match generic_args(&ty, "Result").as_deref() {
        Some([ok, err]) => ((*ok).clone(), Some((*err).clone())),
        _ => (ty, None),
    }
}

/// `async fn f(..) -> R` becomes `fn f(..) -> impl Future<Output = R> + Send`, so that the
/// server adapter can run it on any tokio worker; implementations still write `async fn`.
fn make_send(function: &mut TraitItemFn) {
    let sig = &mut function.sig;
    sig.asyncness = None;
    let output: Type = match &sig.output {
        ReturnType::Default => syn::parse_quote!(()),
        ReturnType::Type(_, ty) => (**ty).clone(),
    };
    sig.output = syn::parse_quote! {
        -> impl ::core::future::Future<Output = #output> + ::core::marker::Send
    };
}

fn service_info(item: &ItemTrait, methods: &[Method], args: &ServiceArgs) -> TokenStream {
    let krate = &args.krate;
    let typed = quote!(#krate::typed);
    let name = item.ident.to_string();
    let doc = doc_of(&item.attrs);
    let namespace = match &args.namespace {
        Some(ns) => quote!(::core::option::Option::Some(#ns)),
        None => quote!(::core::option::Option::None),
    };
    let version = args.version.text();
    let methods = methods.iter().map(|m| {
        let method = m.name.to_string();
        let qualname = format!("{name}.{method}");
        let (doc, since, ok) = (&m.doc, m.since.text(), &m.ok);
        let params = m.params.iter().map(|Param { key, ty, .. }| {
            let required = option_inner(ty).is_none();
            quote!(#typed::ParamInfo { name: #key, required: #required, schema: #typed::schema_of::<#ty> })
        });
        let errors = match &m.err {
            Some(err) => quote!(<#err as #typed::RemoteException>::EXCEPTIONS),
            None => quote!(&[]),
        };
        quote! {
            #typed::MethodInfo {
                name: #method, qualname: #qualname, doc: #doc, since: #since,
                params: &[#(#params),*], result: #typed::schema_of::<#ok>, errors: #errors,
            }
        }
    });
    quote! {
        &#typed::ServiceInfo {
            name: #name, doc: #doc, namespace: #namespace, version: #version,
            methods: &[#(#methods),*],
        }
    }
}

fn client(item: &ItemTrait, methods: &[Method], args: &ServiceArgs) -> TokenStream {
    let krate = &args.krate;
    let typed = quote!(#krate::typed);
    let vis = &item.vis;
    let trait_name = &item.ident;
    let client = format_ident!("{}Client", trait_name);
    let cast = format_ident!("{}Cast", trait_name);
    let info = service_info(item, methods, args);
    let set_namespace = match &args.namespace {
        Some(ns) => quote!(target.namespace = ::core::option::Option::Some(#ns.into());),
        None => quote!(target.namespace = ::core::option::Option::None;),
    };
    let calls = methods.iter().enumerate().map(|(index, m)| {
        let (name, doc, ok) = (&m.name, &m.doc, &m.ok);
        let (params, build) = wire_args(m, krate);
        match &m.err {
            Some(err) => quote! {
                #[doc = #doc]
                pub async fn #name(&self, ctx: &#krate::Context, #(#params),*)
                    -> ::core::result::Result<#ok, #typed::CallError<#err>> {
                    #typed::call(&self.rpc, ctx, &Self::SERVICE.methods[#index], #build).await
                }
            },
            None => quote! {
                #[doc = #doc]
                pub async fn #name(&self, ctx: &#krate::Context, #(#params),*) -> #krate::Result<#ok> {
                    #typed::call_infallible(&self.rpc, ctx, &Self::SERVICE.methods[#index], #build).await
                }
            },
        }
    });
    let casts = methods.iter().enumerate().map(|(index, m)| {
        let (name, doc) = (&m.name, &m.doc);
        let (params, build) = wire_args(m, krate);
        quote! {
            #[doc = #doc]
            pub async fn #name(&self, ctx: &#krate::Context, #(#params),*) -> #krate::Result<()> {
                #typed::cast(&self.rpc, ctx, &#client::SERVICE.methods[#index], #build).await
            }
        }
    });
    let builders = builders(krate);
    let client_doc = format!("The typed client of [`{trait_name}`]: calls return the declared result and error types. Cheap to clone.");
    let cast_doc = format!("Casts of [`{trait_name}`] methods (from [`{client}::cast`] or [`{client}::fanout`]): sent without waiting for a result.");
    quote! {
        #[doc = #client_doc]
        #[derive(Clone)]
        #vis struct #client {
            rpc: #krate::RpcClient,
        }

        impl #client {
            /// The service's description: methods, versions, schemas.
            pub const SERVICE: &'static #typed::ServiceInfo = #info;

            /// A client of the service on `target` (its topic, and optionally a server); the
            /// namespace is the service's.
            pub fn new(transport: #krate::RpcTransport, mut target: #krate::Target) -> Self {
                #set_namespace
                Self { rpc: #krate::RpcClient::new(transport, target) }
            }

            /// A copy to override settings on, for one or a few calls.
            pub fn prepare(&self) -> Self {
                self.clone()
            }

            /// The dynamic client underneath.
            pub fn rpc_client(&self) -> &#krate::RpcClient {
                &self.rpc
            }

            /// Cast instead of call: to one server of the topic, or the one set with `server`.
            pub fn cast(&self) -> #cast {
                #cast { rpc: self.rpc.clone() }
            }

            /// Cast to every server of the topic.
            pub fn fanout(&self) -> #cast {
                #cast { rpc: self.rpc.prepare().fanout(true) }
            }

            #builders
            #(#calls)*
        }

        #[doc = #cast_doc]
        #[derive(Clone)]
        #vis struct #cast {
            rpc: #krate::RpcClient,
        }

        impl #cast {
            #(#casts)*
        }
    }
}

/// The client's parameters and the expression building their keyword arguments.
fn wire_args(m: &Method, krate: &Path) -> (Vec<TokenStream>, TokenStream) {
    let params = m
        .params
        .iter()
        .map(|Param { ident, ty, .. }| quote!(#ident: #ty))
        .collect();
    let adds = m.params.iter().map(|Param { ident, key, ty }| {
        if option_inner(ty).is_some() {
            quote!(.optional(#key, &#ident))
        } else {
            quote!(.arg(#key, &#ident))
        }
    });
    (params, quote!(#krate::typed::Args::new() #(#adds)*))
}

/// Settings forwarded to the `RpcClient` underneath.
fn builders(krate: &Path) -> TokenStream {
    let string = quote!(impl ::core::convert::Into<::std::string::String>);
    let forwards = [
        (
            "timeout",
            quote!(::core::time::Duration),
            "How long a call waits for its reply.",
        ),
        (
            "call_monitor_timeout",
            quote!(::core::time::Duration),
            "Ask servers for heartbeats; fail a call when none comes for this long.",
        ),
        (
            "retry",
            quote!(#krate::Retry),
            "How often to retry sending when the broker is unreachable.",
        ),
        (
            "serializer",
            quote!(#krate::SharedSerializer),
            "Convert arguments, results and contexts with this serializer.",
        ),
        (
            "version_cap",
            string.clone(),
            "Refuse, before sending, methods newer than this version.",
        ),
        ("server", string.clone(), "Address one server of the topic."),
        ("topic", string.clone(), "Address another topic."),
        ("exchange", string.clone(), "Address another exchange."),
    ];
    let forwards = forwards.iter().map(|(name, ty, doc)| {
        let name = Ident::new(name, proc_macro2::Span::call_site());
        quote! {
            #[doc = #doc]
            pub fn #name(self, value: #ty) -> Self {
                Self { rpc: self.rpc.#name(value) }
            }
        }
    });
    quote! {
        #(#forwards)*
        /// Wait for replies without a time limit.
        pub fn no_timeout(self) -> Self {
            Self { rpc: self.rpc.no_timeout() }
        }
    }
}

fn server(item: &ItemTrait, methods: &[Method], args: &ServiceArgs) -> TokenStream {
    let krate = &args.krate;
    let typed = quote!(#krate::typed);
    let vis = &item.vis;
    let trait_name = &item.ident;
    let client = format_ident!("{}Client", trait_name);
    let server = format_ident!("{}Server", trait_name);
    let Version(major, minor, revision) = args.version;
    let arms = methods.iter().map(|m| {
        let name = &m.name;
        let wire_name = name.to_string();
        let takes = m
            .params
            .iter()
            .map(|Param { key, .. }| quote!(kwargs.take(#key)?));
        let call = quote!(self.0.#name(ctx, #(#takes),*).await);
        match m.err {
            Some(_) => quote!(#wire_name => #typed::reply(#call),),
            None => quote!(#wire_name => #typed::reply_infallible(#call),),
        }
    });
    let doc = format!("Serves an implementation of [`{trait_name}`]: add it to an `RpcServer` with `.endpoint(…)`.");
    quote! {
        #[doc = #doc]
        #vis struct #server<T>(::std::sync::Arc<T>);

        impl<T: #trait_name> #server<T> {
            /// Serve `service`.
            pub fn new(service: T) -> Self {
                Self(::std::sync::Arc::new(service))
            }

            /// Serve a service shared with other code.
            pub fn shared(service: ::std::sync::Arc<T>) -> Self {
                Self(service)
            }
        }

        #[#typed::__private::async_trait]
        impl<T: #trait_name> #krate::RpcEndpoint for #server<T> {
            fn namespace(&self) -> ::core::option::Option<&str> {
                #client::SERVICE.namespace
            }

            fn version(&self) -> #krate::Version {
                #krate::Version { major: #major, minor: #minor, revision: #revision }
            }

            fn has_method(&self, method: &str) -> bool {
                #typed::has_method(#client::SERVICE, method)
            }

            async fn dispatch(
                &self,
                ctx: #krate::Context,
                method: &str,
                args: #typed::__private::Map<::std::string::String, #typed::__private::Value>,
            ) -> ::core::result::Result<#typed::__private::Value, #krate::RemoteError> {
                #[allow(unused_mut, unused_variables)]
                let (info, mut kwargs) = #typed::accept(#client::SERVICE, method, args)?;
                match info.name {
                    #(#arms)*
                    _ => ::core::result::Result::Err(#krate::RemoteError::no_such_method(method)),
                }
            }
        }
    }
}
