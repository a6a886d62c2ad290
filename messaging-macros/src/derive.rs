//! `#[derive(RemoteException)]` and `#[derive(Event)]`.

use proc_macro2::TokenStream;
use quote::quote;
use syn::ext::IdentExt;
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
    fields: Vec<Field>,
    unit: bool,
}

/// A field: a keyword argument of the exception.
struct Field {
    ident: Ident,
    /// The keyword (the field name without `r#`).
    key: String,
    ty: syn::Type,
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
    let unit = matches!(fields, Fields::Unit);
    if let Fields::Unnamed(unnamed) = fields {
        return Err(error(
            unnamed,
            "exception fields are keyword arguments: give them names",
        ));
    }
    let fields = fields
        .iter()
        .filter_map(|f| f.ident.clone().map(|ident| (ident, f.ty.clone())))
        .map(|(ident, ty)| Field {
            key: ident.unraw().to_string(),
            ident,
            ty,
        })
        .collect();
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
    let infos = classes.iter().map(|c| exception_info(c, &typed, module));
    let to_arms = classes
        .iter()
        .enumerate()
        .map(|(index, c)| to_remote_arm(index, c, &typed));
    let from_arms = classes.iter().map(from_remote_arm);
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

/// The class's `ExceptionInfo`: name, module, keyword arguments.
fn exception_info(class: &Class, typed: &TokenStream, module: &TokenStream) -> TokenStream {
    let name = &class.name;
    let fields = class.fields.iter().map(|Field { key, ty, .. }| {
        let required = option_inner(ty).is_none();
        quote!(#typed::ParamInfo { name: #key, required: #required, schema: #typed::schema_of::<#ty> })
    });
    quote!(#typed::ExceptionInfo { class: #name, module: #module, fields: &[#(#fields),*] })
}

/// `to_remote` for the class: its fields as kwargs, `Display` as the message.
fn to_remote_arm(index: usize, class: &Class, typed: &TokenStream) -> TokenStream {
    let path = &class.path;
    let idents: Vec<&Ident> = class.fields.iter().map(|f| &f.ident).collect();
    let keys = class.fields.iter().map(|f| &f.key);
    let pattern = if class.unit {
        quote!(#path)
    } else {
        quote!(#path { #(#idents),* })
    };
    quote! {
        #pattern => {
            let mut kwargs = #typed::__private::Map::new();
            #(kwargs.insert(#keys.into(), #typed::kwarg(#idents));)*
            #typed::exception(&Self::EXCEPTIONS[#index], self.to_string(), kwargs)
        }
    }
}

/// `from_remote` for the class: its fields from the kwargs, or `None`.
fn from_remote_arm(class: &Class) -> TokenStream {
    let (path, name) = (&class.path, &class.name);
    let idents = class.fields.iter().map(|f| &f.ident);
    let keys = class.fields.iter().map(|f| &f.key);
    let value = if class.unit {
        quote!(#path)
    } else {
        quote!(#path { #(#idents: kwargs.take(#keys).ok()?),* })
    };
    quote!(#name => ::core::option::Option::Some(#value),)
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
