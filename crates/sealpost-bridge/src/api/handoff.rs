//! Reserved: the routes that move a conversation among the business's devices.
//!
//! `POST /v1/conversations/{account}/claim`, `.../transfer`, `.../resolve` and `.../notes`
//! belong here once the client has an API for them (end-to-end encrypted control messages
//! among the business's devices, spec/business.md). Until then the bridge serves none of
//! them: a request gets 404, and `openapi.json` does not list them. Each is to be added in
//! `super::routes` with `Routes::add` (which keeps the OpenAPI test honest) and described
//! in `openapi.json` and README.md.
