//! The native drivers: each provisions one action type through the AWS
//! SDK (and, for kubernetes-deploy, the cluster's Kubernetes API), behind
//! `crate::actions::driver::Driver`, and runs in its own least-privilege
//! function; github-workflow and terraform call GitHub's and HCP Terraform's
//! APIs the same way.

pub mod eks;
pub mod github;
pub mod kubernetes;
pub mod network;
pub mod rds;
pub mod secret;
pub mod terraform;
