//! `#[derive(Snapshot)]` for [actix-snapshot](https://docs.rs/actix-snapshot): turns an actix
//! actor into a node of a snapshot group without touching its `Handler` impls.
//!
//! It generates, for the actor type:
//! - `impl Snapshottable`: what the snapshot records (`state = field`, or
//!   `state_type = T, state_fn = path`), its tag, version, upgrade hook and wait-for list;
//! - one `impl Handler<Envelope<M>>` per message type named in `messages(..)`: the library's
//!   protocol step around the actor's own `impl Handler<M>`;
//! - `impl Handler<Control>`: the library's control messages (record a round, shut down).
//!
//! ```ignore
//! #[derive(Snapshot)]
//! #[snapshot(state = books, messages(Transfer, Audit))]
//! struct Branch { books: Books, peers: Vec<NodeAddr<Branch>> }
//! ```
//!
//! Attribute keys (all inside one or more `#[snapshot(..)]`):
//!
//! | key | meaning |
//! |---|---|
//! | `state = field` | the field recorded (its type is the state; it is cloned at a cut) |
//! | `state_type = T, state_fn = path` | or: `path(&self) -> T` builds the state |
//! | `messages(M1, M2, ..)` | the message types the node receives through the library |
//! | `tag = "Name"` | stable type tag in snapshot files (default: the type's name) |
//! | `version = N` | state version (default 1) |
//! | `upgrade = path` | `path(version: u32, bytes: &[u8]) -> Result<State, String>` |
//! | `waits_for = path` | `path(&self) -> Vec<NodeId>` for deadlock detection |

use proc_macro::TokenStream;
use proc_macro2::Span;
use quote::quote;
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::{Data, DeriveInput, Error, Expr, Ident, LitInt, LitStr, Meta, Path, Token, Type};

/// Derives `Snapshottable` and the library's handlers for an actix actor. See the crate docs.
#[proc_macro_derive(Snapshot, attributes(snapshot))]
pub fn derive_snapshot(input: TokenStream) -> TokenStream {
    let input = syn::parse_macro_input!(input as DeriveInput);
    match expand(input) {
        Ok(ts) => ts.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

#[derive(Default)]
struct Args {
    state_field: Option<Ident>,
    state_type: Option<Type>,
    state_fn: Option<Path>,
    messages: Vec<Type>,
    tag: Option<LitStr>,
    version: Option<LitInt>,
    upgrade: Option<Path>,
    waits_for: Option<Path>,
}

fn parse_args(input: &DeriveInput) -> syn::Result<Args> {
    let mut args = Args::default();
    for attr in input.attrs.iter().filter(|a| a.path().is_ident("snapshot")) {
        let metas = attr.parse_args_with(Punctuated::<Meta, Token![,]>::parse_terminated)?;
        for meta in metas {
            let key = meta
                .path()
                .get_ident()
                .map(|i| i.to_string())
                .unwrap_or_default();
            match (key.as_str(), &meta) {
                ("messages", Meta::List(list)) => {
                    let tys = Punctuated::<Type, Token![,]>::parse_terminated
                        .parse2(list.tokens.clone())?;
                    args.messages.extend(tys);
                }
                (_, Meta::NameValue(nv)) => {
                    let value = &nv.value;
                    match key.as_str() {
                        "state" => args.state_field = Some(syn::parse2(quote!(#value))?),
                        "state_type" => args.state_type = Some(syn::parse2(quote!(#value))?),
                        "state_fn" => args.state_fn = Some(expr_path(value)?),
                        "tag" => args.tag = Some(syn::parse2(quote!(#value))?),
                        "version" => args.version = Some(syn::parse2(quote!(#value))?),
                        "upgrade" => args.upgrade = Some(expr_path(value)?),
                        "waits_for" => args.waits_for = Some(expr_path(value)?),
                        _ => return Err(Error::new_spanned(&meta, unknown(&key))),
                    }
                }
                _ => return Err(Error::new_spanned(&meta, unknown(&key))),
            }
        }
    }
    Ok(args)
}

fn unknown(key: &str) -> String {
    format!(
        "unknown snapshot attribute `{key}`: expected state = field, state_type = T, \
         state_fn = path, messages(..), tag = \"..\", version = N, upgrade = path, \
         waits_for = path"
    )
}

fn expr_path(e: &Expr) -> syn::Result<Path> {
    match e {
        Expr::Path(p) => Ok(p.path.clone()),
        other => Err(Error::new_spanned(other, "expected a path to a function")),
    }
}

fn expand(input: DeriveInput) -> syn::Result<proc_macro2::TokenStream> {
    let args = parse_args(&input)?;
    let name = &input.ident;
    let (impl_g, ty_g, where_g) = input.generics.split_for_impl();
    let krate = quote!(::actix_snapshot);

    let (state_ty, state_body) = match (&args.state_field, &args.state_type, &args.state_fn) {
        (Some(field), None, None) => {
            let Data::Struct(data) = &input.data else {
                return Err(Error::new_spanned(name, "`state = field` needs a struct"));
            };
            let ty = data
                .fields
                .iter()
                .find(|f| f.ident.as_ref() == Some(field))
                .map(|f| f.ty.clone())
                .ok_or_else(|| Error::new_spanned(field, format!("no field `{field}`")))?;
            (
                quote!(#ty),
                quote!(::core::clone::Clone::clone(&self.#field)),
            )
        }
        (None, Some(ty), Some(f)) => (quote!(#ty), quote!(#f(self))),
        _ => {
            return Err(Error::new(
                Span::call_site(),
                "#[derive(Snapshot)] needs #[snapshot(state = field)] or \
                 #[snapshot(state_type = T, state_fn = path)]",
            ));
        }
    };
    let tag = args.tag.as_ref().map(|t| {
        quote! { fn type_tag() -> &'static str { #t } }
    });
    let version = args.version.as_ref().map(|v| {
        quote! { const STATE_VERSION: u32 = #v; }
    });
    let upgrade = args.upgrade.as_ref().map(|p| {
        quote! {
            fn upgrade_state(version: u32, state: &[u8]) -> ::core::result::Result<Self::State, ::std::string::String> {
                #p(version, state)
            }
        }
    });
    let waits = args.waits_for.as_ref().map(|p| {
        quote! {
            fn waits_for(&self) -> ::std::vec::Vec<#krate::NodeId> { #p(self) }
        }
    });
    let messages = &args.messages;
    let handlers = messages.iter().map(|m| {
        quote! {
            impl #impl_g ::actix::Handler<#krate::Envelope<#m>> for #name #ty_g #where_g {
                type Result = ();
                #[inline]
                fn handle(&mut self, env: #krate::Envelope<#m>, ctx: &mut ::actix::Context<Self>) {
                    #krate::__private::deliver::<Self, #m>(self, env, ctx)
                }
            }
        }
    });
    Ok(quote! {
        impl #impl_g #krate::Snapshottable for #name #ty_g #where_g {
            type State = #state_ty;
            #version
            #tag
            fn snapshot_state(&self) -> Self::State { #state_body }
            #waits
            #upgrade
            fn register_messages(reg: &mut #krate::__private::Messages<Self>) {
                #( reg.add::<#messages>(); )*
            }
        }
        impl #impl_g ::actix::Handler<#krate::__private::Control> for #name #ty_g #where_g {
            type Result = ();
            fn handle(&mut self, c: #krate::__private::Control, ctx: &mut ::actix::Context<Self>) {
                #krate::__private::control::<Self>(self, c, ctx)
            }
        }
        #( #handlers )*
    })
}
