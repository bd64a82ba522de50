"""testkit's additions to moto (pinned in tools/requirements-test.txt), loaded by the moto server
that `testkit::moto::Moto::start` runs: this directory is put first on its PYTHONPATH, so Python
imports this file at start-up (the standard `sitecustomize` hook). It changes nothing until moto
imports its RDS responses module, and nothing outside the moto server.

What moto 5.2.5 lacks and the rotation's RDS look-ups use: Aurora custom endpoints. Added here
on moto's own RDS model (the clusters and instances created through moto's real API), answering
as the RDS API reference describes (CreateDBClusterEndpoint, DescribeDBClusterEndpoints,
DBClusterEndpoint):

* CreateDBClusterEndpoint(DBClusterEndpointIdentifier, DBClusterIdentifier, EndpointType,
  StaticMembers, ExcludedMembers): the cluster must exist in the region (DBClusterNotFoundFault);
  the identifier is stored in lower case and must be new in the region
  (DBClusterEndpointAlreadyExistsFault); EndpointType is READER or ANY (InvalidParameterValue
  otherwise). The endpoint is `ID.cluster-custom-SUFFIX.REGION.rds.amazonaws.com`, with SUFFIX the
  one of the cluster's own endpoints (`CLUSTER.cluster-SUFFIX…`), as on RDS. It is returned
  `available` at once (RDS goes through `creating` first), with EndpointType CUSTOM,
  CustomEndpointType, StaticMembers, ExcludedMembers, DBClusterEndpointArn
  (`arn:aws:rds:REGION:ACCOUNT:cluster-endpoint:ID`) and DBClusterEndpointResourceIdentifier.
  Members are recorded as given (not checked against the cluster's instances).
* DescribeDBClusterEndpoints(DBClusterIdentifier, DBClusterEndpointIdentifier): with a cluster,
  its WRITER and READER endpoints (from moto's cluster) followed by its custom endpoints
  (DBClusterNotFoundFault for an unknown cluster); with an endpoint identifier, that custom
  endpoint (an unknown one gives an empty list); with neither, every endpoint of the region.
  Filters are not emulated: a request with Filters fails with InvalidParameterValue saying so,
  rather than answering as if they had been applied. No pagination (no Marker).

Global clusters (CreateGlobalCluster, DescribeGlobalClusters, CreateDBCluster with
GlobalClusterIdentifier) are moto's own and not changed here.
"""

import importlib.abc
import importlib.machinery
import sys

_TARGET = "moto.rds.responses"


def _install(responses):
    from moto.core.responses import ActionResult
    from moto.moto_api._internal import mock_random as random
    from moto.rds.exceptions import (
        DBClusterNotFoundError,
        InvalidParameterValue,
        RDSClientError,
    )

    class DBClusterEndpointAlreadyExistsFault(RDSClientError):
        def __init__(self, identifier):
            super().__init__(
                "DBClusterEndpointAlreadyExistsFault",
                f"DBClusterEndpoint {identifier} already exists.",
            )

    def custom_endpoints(backend):
        # Kept on moto's regional backend: `/moto-api/reset` replaces the backends, and this
        # state with them.
        if not hasattr(backend, "_testkit_custom_endpoints"):
            backend._testkit_custom_endpoints = {}
        return backend._testkit_custom_endpoints

    def find_cluster(backend, identifier):
        clusters = backend.describe_db_clusters(db_cluster_identifier=identifier)
        if not clusters:
            raise DBClusterNotFoundError(identifier)
        return clusters[0]

    def builtin_endpoints(cluster):
        return [
            {
                "DBClusterIdentifier": cluster.db_cluster_identifier,
                "Endpoint": cluster.endpoint,
                "Status": "available",
                "EndpointType": "WRITER",
            },
            {
                "DBClusterIdentifier": cluster.db_cluster_identifier,
                "Endpoint": cluster.reader_endpoint,
                "Status": "available",
                "EndpointType": "READER",
            },
        ]

    def create_db_cluster_endpoint(self):
        params = self.params
        identifier = params["DBClusterEndpointIdentifier"].lower()
        kind = params.get("EndpointType", "")
        if kind.upper() not in ("READER", "ANY"):
            raise InvalidParameterValue(
                f"Invalid endpoint type {kind!r}: expected READER or ANY."
            )
        cluster = find_cluster(self.backend, params["DBClusterIdentifier"])
        endpoints = custom_endpoints(self.backend)
        if identifier in endpoints:
            raise DBClusterEndpointAlreadyExistsFault(identifier)
        backend = self.backend
        endpoint = {
            "DBClusterEndpointIdentifier": identifier,
            "DBClusterIdentifier": cluster.db_cluster_identifier,
            "DBClusterEndpointResourceIdentifier": "cluster-endpoint-"
            + random.get_random_hex(26),
            "Endpoint": f"{identifier}.cluster-custom-{cluster.url_identifier}."
            f"{backend.region_name}.rds.amazonaws.com",
            "Status": "available",
            "EndpointType": "CUSTOM",
            "CustomEndpointType": kind.upper(),
            "StaticMembers": list(params.get("StaticMembers", [])),
            "ExcludedMembers": list(params.get("ExcludedMembers", [])),
            "DBClusterEndpointArn": f"arn:{backend.partition}:rds:{backend.region_name}:"
            f"{backend.account_id}:cluster-endpoint:{identifier}",
        }
        endpoints[identifier] = endpoint
        return ActionResult(endpoint)

    def describe_db_cluster_endpoints(self):
        params = self.params
        if params.get("Filters"):
            raise InvalidParameterValue(
                "testkit's DescribeDBClusterEndpoints does not emulate Filters "
                "(crates/testkit/moto/sitecustomize.py)"
            )
        endpoints = list(custom_endpoints(self.backend).values())
        identifier = params.get("DBClusterEndpointIdentifier")
        cluster_id = params.get("DBClusterIdentifier")
        found = []
        if cluster_id:
            cluster = find_cluster(self.backend, cluster_id)
            found = builtin_endpoints(cluster) + [
                e
                for e in endpoints
                if e["DBClusterIdentifier"] == cluster.db_cluster_identifier
            ]
        elif not identifier:
            for cluster in self.backend.describe_db_clusters():
                found += builtin_endpoints(cluster)
            found += endpoints
        else:
            found = endpoints
        if identifier:
            found = [
                e
                for e in found
                if e.get("DBClusterEndpointIdentifier") == identifier.lower()
            ]
        return ActionResult({"DBClusterEndpoints": found})

    responses.RDSResponse.create_db_cluster_endpoint = create_db_cluster_endpoint
    responses.RDSResponse.describe_db_cluster_endpoints = describe_db_cluster_endpoints


class _AfterImport(importlib.abc.MetaPathFinder):
    """Runs `_install` right after moto's RDS responses module is imported."""

    def find_spec(self, name, path, target=None):
        if name != _TARGET:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return spec
        loader = spec.loader
        original = loader.exec_module

        def exec_module(module):
            original(module)
            _install(module)

        loader.exec_module = exec_module
        return spec


sys.meta_path.insert(0, _AfterImport())
