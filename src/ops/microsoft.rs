//! `--backend microsoft[:TENANT]` (issue 12): the tenant's directory through Microsoft
//! Graph ([`GraphProvider`]) over the HTTP transport of `provider::http` (sign-in from the
//! environment, the cloud's endpoints with their overrides, `CRMCTL_CA_FILE`). The
//! instances, roles and access modes are the next issue's (the Power Platform admin API and
//! Dataverse): until then the provider refuses their operations with what to do by hand.

use std::sync::Arc;

use crate::domain::op::Op;
use crate::observed::Tenant;
use crate::ops::backend::{Backend, Presence};
use crate::ops::OpsError;
use crate::provider::graph::GraphProvider;
use crate::provider::http::cloud::Cloud;
use crate::provider::{
    BoxFuture, Executed, OperationHandle, Polled, Provider, ProviderError, RequestFamily, Scope,
};

/// A Microsoft tenant as the workflows see it: the Graph provider, plus where it is.
pub struct MicrosoftBackend {
    graph: GraphProvider,
    tenant: String,
    cloud: Cloud,
    graph_url: String,
}

/// Sign in (from the environment) and open `tenant` in `cloud`.
pub fn open(tenant: &str, cloud: Cloud) -> Result<MicrosoftBackend, OpsError> {
    let transport = crate::provider::http::connect(cloud, tenant, |k| std::env::var(k).ok(), None)
        .map_err(|e| OpsError::BadBackend {
            spec: format!("microsoft:{tenant}"),
            problem: e.to_string(),
        })?;
    let graph_url = transport.endpoints().graph.clone();
    let graph = GraphProvider::new(Arc::new(transport)).with_graph_base(graph_url.clone());
    Ok(MicrosoftBackend {
        graph,
        tenant: tenant.to_string(),
        cloud,
        graph_url,
    })
}

impl Provider for MicrosoftBackend {
    fn observe<'a>(&'a self, scope: &'a Scope) -> BoxFuture<'a, Result<Tenant, ProviderError>> {
        self.graph.observe(scope)
    }
    fn observe_since<'a>(
        &'a self,
        scope: &'a Scope,
        cursor: Option<crate::provider::ObserveCursor>,
    ) -> BoxFuture<'a, Result<(Tenant, Option<crate::provider::ObserveCursor>), ProviderError>>
    {
        self.graph.observe_since(scope, cursor)
    }
    fn execute<'a>(&'a self, op: &'a Op) -> BoxFuture<'a, Result<Executed, ProviderError>> {
        self.graph.execute(op)
    }
    fn execute_batch<'a>(
        &'a self,
        ops: &'a [Op],
    ) -> BoxFuture<'a, Vec<Result<Executed, ProviderError>>> {
        self.graph.execute_batch(ops)
    }
    fn family(&self, op: &Op) -> RequestFamily {
        self.graph.family(op)
    }
    fn poll<'a>(
        &'a self,
        handle: &'a OperationHandle,
    ) -> BoxFuture<'a, Result<Polled, ProviderError>> {
        self.graph.poll(handle)
    }
    fn replay_safe(&self, op: &Op) -> bool {
        self.graph.replay_safe(op)
    }
    fn manual(&self, op: &Op) -> Option<String> {
        self.graph.manual(op)
    }
}

impl Backend for MicrosoftBackend {
    fn identity(&self) -> String {
        format!(
            "microsoft:{}@{}",
            crate::domain::ident::fold(&self.tenant),
            self.cloud.name()
        )
    }
    fn presence(&self) -> Presence {
        // A real tenant always exists; reading it is what tells whether crmctl may use it.
        Presence::Present
    }
    fn location(&self) -> String {
        format!(
            "the Microsoft tenant {} ({} cloud, Graph {})",
            self.tenant,
            self.cloud.name(),
            self.graph_url
        )
    }
}
