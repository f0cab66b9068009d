//! The upstream registry client against a real `docker-registry` and
//! against small fake registries that play the parts a real one will not:
//! token services, basic auth, failures, redirects, lies.

mod support;

mod auth;
mod docker_registry;
mod faults;
