"""testkit's additions to moto (pinned in tools/requirements-test.txt), loaded by the moto server
that `testkit::moto::Moto::start` runs: this directory is put first on its PYTHONPATH, so Python
imports this file at start-up (the standard `sitecustomize` hook). It changes nothing until moto
imports its RDS or Secrets Manager responses module, and nothing outside the moto server.

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

What moto 5.2.5 lacks and restore uses, added on moto's own Secrets Manager model (the Secrets
Manager API reference: PutResourcePolicy, RotateSecret):

* PutResourcePolicy with BlockPublicPolicy=true refuses a policy that grants broad access, with
  PublicPolicyException (moto ignores the parameter). "Broad" is read narrowly here: an Allow
  statement whose Principal is `*` or `{"AWS": "*"}` (or NotPrincipal), without a Condition (AWS
  uses its own policy analysis, which also refuses some conditional policies).
* RotateSecret with RotateImmediately=false records the rotation function and rules and enables
  rotation, and changes no version (AWS then runs the function's testSecret step, which leaves
  no version behind; moto instead adds a pending version and fails when its own Lambda service
  does not hold the function). The function is not invoked here. RotateImmediately=true (the
  default) is moto's own.
* UpdateSecretVersionStage moving AWSCURRENT makes the target version the secret's current one
  for moto's later calls too (moto moves the label but keeps its own record of the current
  version, so a later PutSecretValue labelled a second version AWSCURRENT).
* LastChangedDate ("the last date and time that this secret was modified in any way", ListSecrets
  and DescribeSecret) moves on every change of the secret: moto moves it only when a value or
  the description, tags or key change through UpdateSecret; here PutResourcePolicy,
  DeleteResourcePolicy, TagResource, UntagResource, UpdateSecretVersionStage, RotateSecret,
  ReplicateSecretToRegions and RemoveRegionsFromReplication move it too (the backup carries a
  secret over from its previous snapshot when this date and its version ids are unchanged).
* GetResourcePolicy on a replica returns the primary's policy (AWS replicates resource policies
  with the secret; moto refuses the call with OperationNotPermittedOnReplica). Writes to a
  replica stay refused, as moto does.
"""

import importlib.abc
import importlib.machinery
import sys

_RDS = "moto.rds.responses"
_SECRETS = "moto.secretsmanager.responses"


def _install_rds(responses):
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


def _broad(policy_text):
    import json

    try:
        policy = json.loads(policy_text)
    except ValueError:
        return False
    statements = policy.get("Statement", [])
    if isinstance(statements, dict):
        statements = [statements]
    for st in statements:
        if st.get("Effect") != "Allow" or st.get("Condition"):
            continue
        if "NotPrincipal" in st:
            return True
        principal = st.get("Principal")
        if principal == "*":
            return True
        if isinstance(principal, dict):
            aws = principal.get("AWS", [])
            if aws == "*" or (isinstance(aws, list) and "*" in aws):
                return True
    return False


def _install_secrets(responses):
    import json
    import time

    from moto.secretsmanager.exceptions import (
        InvalidRequestException,
        SecretNotFoundException,
        SecretsManagerClientError,
    )
    from moto.secretsmanager.models import ReplicaSecret, SecretsManagerBackend
    from moto.secretsmanager.exceptions import OperationNotPermittedOnReplica

    class PublicPolicyException(SecretsManagerClientError):
        def __init__(self):
            super().__init__(
                "PublicPolicyException",
                "The BlockPublicPolicy parameter is set to true, and the resource policy did "
                "not prevent broad access to the secret.",
            )

    original_move = SecretsManagerBackend.update_secret_version_stage

    def update_secret_version_stage(
        self, secret_id, version_stage, remove_from_version_id, move_to_version_id
    ):
        result = original_move(
            self, secret_id, version_stage, remove_from_version_id, move_to_version_id
        )
        secret = self.secrets[secret_id]
        if version_stage == "AWSCURRENT" and move_to_version_id and not isinstance(
            secret, ReplicaSecret
        ):
            secret.set_default_version_id(move_to_version_id)
        return result

    SecretsManagerBackend.update_secret_version_stage = update_secret_version_stage

    def _touching(name):
        original = getattr(SecretsManagerBackend, name)

        def touching(self, *args, **kwargs):
            result = original(self, *args, **kwargs)
            secret_id = args[0] if args else kwargs.get("secret_id", kwargs.get("arn"))
            try:
                secret = self.secrets[secret_id]
            except Exception:
                return result
            if not isinstance(secret, ReplicaSecret):
                secret.last_changed_date = int(time.time())
            return result

        setattr(SecretsManagerBackend, name, touching)

    for _name in (
        "put_resource_policy",
        "delete_resource_policy",
        "tag_resource",
        "untag_resource",
        "update_secret_version_stage",
        "rotate_secret",
        "replicate_secret_to_regions",
        "remove_regions_from_replication",
    ):
        _touching(_name)

    original_put = responses.SecretsManagerResponse.put_resource_policy
    original_rotate = responses.SecretsManagerResponse.rotate_secret

    def put_resource_policy(self):
        if self._get_bool_param("BlockPublicPolicy", False) and _broad(
            self._get_param("ResourcePolicy") or ""
        ):
            raise PublicPolicyException()
        return original_put(self)

    original_get_policy = responses.SecretsManagerResponse.get_resource_policy

    def get_resource_policy(self):
        secret_id = self._get_param("SecretId")
        backend = self.backend
        if backend._is_valid_identifier(secret_id):
            secret = backend.secrets[secret_id]
            if isinstance(secret, ReplicaSecret):
                resp = {"ARN": secret.arn, "Name": secret.name}
                if secret.source.policy is not None:
                    resp["ResourcePolicy"] = secret.source.policy
                return json.dumps(resp)
        return original_get_policy(self)

    def rotate_secret(self):
        if self._get_bool_param("RotateImmediately", True):
            return original_rotate(self)
        secret_id = self._get_param("SecretId")
        backend = self.backend
        if not backend._is_valid_identifier(secret_id):
            raise SecretNotFoundException()
        secret = backend.secrets[secret_id]
        if isinstance(secret, ReplicaSecret):
            raise OperationNotPermittedOnReplica
        if secret.is_deleted():
            raise InvalidRequestException(
                "You tried to perform the operation on a secret that's currently marked deleted."
            )
        rules = self._get_param("RotationRules") or {}
        days = rules.get("AutomaticallyAfterDays")
        secret.rotation_requested = True
        secret.rotation_enabled = True
        secret.rotation_lambda_arn = self._get_param("RotationLambdaARN") or ""
        if days:
            secret.auto_rotate_after_days = days
            secret.next_rotation_date = int(time.time()) + int(days) * 86400
        return json.dumps({"ARN": secret.arn, "Name": secret.name})

    responses.SecretsManagerResponse.put_resource_policy = put_resource_policy
    responses.SecretsManagerResponse.rotate_secret = rotate_secret
    responses.SecretsManagerResponse.get_resource_policy = get_resource_policy


_INSTALLERS = {_RDS: _install_rds, _SECRETS: _install_secrets}


class _AfterImport(importlib.abc.MetaPathFinder):
    """Runs the installer of a module right after moto imports it."""

    def find_spec(self, name, path, target=None):
        install = _INSTALLERS.get(name)
        if install is None:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return spec
        loader = spec.loader
        original = loader.exec_module

        def exec_module(module):
            original(module)
            install(module)

        loader.exec_module = exec_module
        return spec


sys.meta_path.insert(0, _AfterImport())
