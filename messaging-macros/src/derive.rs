//! `#[derive(RemoteException)]` and `#[derive(Event)]`.

use proc_macro2::TokenStream;
use quote::quote;
use syn::{Attribute, Data, DeriveInput, Fields, Ident, LitStr, Path};

use crate::{crate_path, error, option_inner};

/// The `#[remote(…)]` arguments of a type or a variant.
#[derive(Default)]
struct RemoteArgs {
    class: Option<LitStr>,
    module: Option<LitStr>,
    krate: Option<LitStr>,
}

fn remote_args(attrs: &[Attribute]) -> syn::Result<RemoteArgs> {
    let mut args = RemoteArgs::default();
    for attr in attrs.iter().filter(|a| a.path().is_ident("remote")) {
        attr.parse_nested_meta(|meta| {
            let value: LitStr = meta.value()?.parse()?;
            if meta.path.is_ident("class") {
                args.class = Some(value);
            } else if meta.path.is_ident("module") {
                args.module = Some(value);
            } else if meta.path.is_ident("crate") {
                args.krate = Some(value);
            } else {
                return Err(meta.error("unknown argument: expected `class`, `module` or `crate`"));
            }
            Ok(())
        })?;
    }
    Ok(args)
}

/// One exception class: a struct, or a variant of an enum.
struct Class {
    /// `Self` or `Self::Variant`.
    path: TokenStream,
    name: String,
    fields: Vec<(Ident, syn::Type)>,
    unit: bool,
}

pub fn remote_exception(input: DeriveInput) -> syn::Result<TokenStream> {
    let args = remote_args(&input.attrs)?;
    let krate = crate_path(args.krate.clone())?;
    let classes = match &input.data {
        Data::Struct(data) => {
            let name = args
                .class
                .as_ref()
                .map_or_else(|| input.ident.to_string(), LitStr::value);
            vec![class(quote!(Self), name, &data.fields)?]
        }
        Data::Enum(data) => data
            .variants
            .iter()
            .map(|v| {
                let variant = &v.ident;
                let name = remote_args(&v.attrs)?
                    .class
                    .map_or_else(|| variant.to_string(), |c| c.value());
                class(quote!(Self::#variant), name, &v.fields)
            })
            .collect::<syn::Result<_>>()?,
        Data::Union(_) => {
            return Err(error(
                &input.ident,
                "a remote exception is a struct or an enum",
            ))
        }
    };
    let module = match &args.module {
        Some(module) => quote!(#module),
        None => quote!(::core::module_path!()),
    };
    Ok(expand_remote(&input, &krate, &classes, &module))
}

fn class(path: TokenStream, name: String, fields: &Fields) -> syn::Result<Class> {
    let (fields, unit) = match fields {
        Fields::Named(named) => (
            named
                .named
                .iter()
                .map(|f| (f.ident.clone().expect("named"), f.ty.clone()))
                .collect(),
            false,
        ),
        Fields::Unit => (Vec::new(), true),
        Fields::Unnamed(unnamed) => {
            return Err(error(
                unnamed,
                "exception fields are keyword arguments: give them names",
            ))
        }
    };
    Ok(Class {
        path,
        name,
        fields,
        unit,
    })
}

fn expand_remote(
    input: &DeriveInput,
    krate: &Path,
    classes: &[Class],
    module: &TokenStream,
) -> TokenStream {
    let typed = quote!(#krate::typed);
    let ident = &input.ident;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    let infos = classes.iter().map(|c| {
        let name = &c.name;
        let fields = c.fields.iter().map(|(field, ty)| {
            let (key, required) = (field.to_string(), option_inner(ty).is_none());
            quote!(#typed::ParamInfo { name: #key, required: #required, schema: #typed::schema_of::<#ty> })
        });
        quote!(#typed::ExceptionInfo { class: #name, module: #module, fields: &[#(#fields),*] })
    });
    let to_arms = classes.iter().enumerate().map(|(index, c)| {
        let path = &c.path;
        let names: Vec<&Ident> = c.fields.iter().map(|(f, _)| f).collect();
        let keys = names.iter().map(|f| f.to_string());
        let pattern = if c.unit {
            quote!(#path)
        } else {
            quote!(#path { #(#names),* })
        };
        quote! {
            #pattern => {
                let mut kwargs = #typed::__private::Map::new();
                #(kwargs.insert(#keys.into(), #typed::kwarg(#names));)*
                #typed::exception(&Self::EXCEPTIONS[#index], self.to_string(), kwargs)
            }
        }
    });
    let from_arms = classes.iter().map(|c| {
        let (path, name) = (&c.path, &c.name);
        let names = c.fields.iter().map(|(f, _)| f);
        let keys = c.fields.iter().map(|(f, _)| f.to_string());
        let value = if c.unit {
            quote!(#path)
        } else {
            quote!(#path { #(#names: kwargs.take(#keys).ok()?),* })
        };
        quote!(#name => ::core::option::Option::Some(#value),)
    });
    quote! {
        impl #impl_generics #typed::RemoteException for #ident #ty_generics #where_clause {
            const EXCEPTIONS: &'static [#typed::ExceptionInfo] = &[#(#infos),*];

            #[allow(unused_mut)]
            fn to_remote(&self) -> #krate::RemoteError {
                match self {
                    #(#to_arms)*
                }
            }

            fn from_remote(remote: &#krate::RemoteError) -> ::core::option::Option<Self> {
                #[allow(unused_mut, unused_variables)]
                let mut kwargs = #typed::KwArgs::lenient("exception", remote.kwargs.clone());
                match remote.class.as_str() {
                    #(#from_arms)*
                    _ => ::core::option::Option::None,
                }
            }
        }
    }
}

pub fn event(input: DeriveInput) -> syn::Result<TokenStream> {
    let (mut event_type, mut priority, mut krate) = (None, None, None);
    for attr in input.attrs.iter().filter(|a| a.path().is_ident("event")) {
        attr.parse_nested_meta(|meta| {
            let value: LitStr = meta.value()?.parse()?;
            if meta.path.is_ident("type") {
                event_type = Some(value);
            } else if meta.path.is_ident("priority") {
                priority = Some(value);
            } else if meta.path.is_ident("crate") {
                krate = Some(value);
            } else {
                return Err(meta.error("unknown argument: expected `type`, `priority` or `crate`"));
            }
            Ok(())
        })?;
    }
    let Some(event_type) = event_type else {
        return Err(error(
            &input.ident,
            "an event names its type: #[event(type = \"service.thing.end\")]",
        ));
    };
    let krate = crate_path(krate)?;
    let priority = match priority.as_ref().map(LitStr::value).as_deref().unwrap_or("info") {
        "audit" => quote!(Audit),
        "debug" => quote!(Debug),
        "info" => quote!(Info),
        "warn" | "warning" => quote!(Warn),
        "error" => quote!(Error),
        "critical" => quote!(Critical),
        "sample" => quote!(Sample),
        other => {
            return Err(error(
                &priority,
                format!("unknown priority `{other}`: expected audit, debug, info, warn, error, critical or sample"),
            ))
        }
    };
    let ident = &input.ident;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    Ok(quote! {
        impl #impl_generics #krate::typed::Event for #ident #ty_generics #where_clause {
            const EVENT_TYPE: &'static str = #event_type;
            const PRIORITY: #krate::Priority = #krate::Priority::#priority;
        }
    })
}
