"""Error bodies of the BIG-IP emulator, and the exception a handler raises to send one."""

from __future__ import annotations

import copy
from typing import Any

#: Every error body the emulator sends. The first group is copied from real BIG-IPs
#: (fixtures/bigip/error_bodies.json), with the varying parts as {placeholders}; the rest are the
#: emulator's closest known equivalents.
ERRORS: dict[str, Any] = {
    "pool_not_found_404": {"code": 404, "message": "01020036:3: The requested Pool ({pool}) was not found.",
                           "errorStack": [], "apiError": 3},
    "member_not_found_404": {"code": 404,
                             "message": "01020036:3: The requested Pool Member ({pool} {node} {port}) was not found.",
                             "errorStack": [], "apiError": 3},
    "object_not_found_404": {"code": 404, "message": "Object not found - {path}", "errorStack": [], "apiError": 1},
    "token_expired_401": {"code": 401, "message": "X-F5-Auth-Token has expired.", "errorStack": [], "apiError": 1},
    "token_missing_401": {"code": 401, "message": "X-F5-Auth-Token does not exist.", "errorStack": [], "apiError": 1},
    "no_auth_401": {"code": 401,
                    "message": "Authorization failed: no user authentication header or token detected. "
                               "Uri:http://localhost:8100{path} Referrer:{client} Sender:{client}",
                    "errorStack": [], "apiError": 1},
    "token_limit_400": {"code": 400, "message": "user {user_id} has reached maximum active login tokens",
                        "errorStack": [], "apiError": 1},
    "mcpd_lost_500": {"code": 500, "message": "The connection to mcpd has been lost, try again.", "errorStack": [],
                      "apiError": 32768001},
    "restjavad_not_ready_404": {"code": 404,
                                "message": "URI path {path} not registered. Please verify URI is supported "
                                           "and wait for /available suffix to be responsive.",
                                "restOperationId": "{op_id}", "kind": ":resterrorresponse"},
    "restjavad_restarting_503_html": "<html><head><title>Configuration Utility restarting...</title></head>"
                                     "<body>Configuration Utility restarting...</body></html>",
    "node_in_use_400": {"code": 400, "message": "01070110:3: Node address '{node}' is referenced by a member of pool '{pool}'.",
                        "errorStack": [], "apiError": 3},
    "transaction_header_left_on_commit_400": {
        "code": 400, "message": "Transaction {trans_id} operation .... is not allowed to be added to transaction.",
        "errorStack": [], "apiError": 1},
    # -- not in the fixtures: closest known forms
    "login_failed_401": {"code": 401, "message": "Authentication failed.", "originalRequestBody": "{body}",
                         "referer": "{client}", "restOperationId": "{op_id}", "errorStack": [],
                         "kind": ":resterrorresponse"},
    "authz_failed_401": {"code": 401,
                         "message": "Authorization failed: user=https://localhost/mgmt/shared/authz/users/{user} "
                                    "resource={path} verb={method} uri:http://localhost:8100{path} "
                                    "referrer:{client} sender:{client}",
                         "referer": "{client}", "restOperationId": "{op_id}", "errorStack": [],
                         "kind": ":resterrorresponse"},
    # mcpd's refusal of a change the role may not make (f5-common-python #1516, f5-ansible #2133)
    "access_denied_400": {"code": 400, "message": "01070822:3: Access Denied: user ({user}) does not have {verb} "
                                                  "access to object ({object})", "errorStack": [], "apiError": 3},
    "invalid_json_400": {"code": 400, "message": "Found invalid JSON body in the request.", "errorStack": [], "apiError": 1},
    "unexpected_property_400": {"code": 400, "message": "Found unexpected json pair at configuration item {item}. The json pair is {pair}.",
                                "errorStack": [], "apiError": 26214401},
    "invalid_value_400": {"code": 400, "message": "01070335:3: Invalid value {value} for {prop} of pool member {member}: {why}",
                          "errorStack": [], "apiError": 3},
    # the pool's integer properties (queueTimeLimit in ms, queueDepthLimit, ...): the member refusal's form
    "invalid_pool_value_400": {"code": 400, "message": "01070335:3: Invalid value {value} for {prop} of pool {pool}: {why}",
                               "errorStack": [], "apiError": 3},
    "token_timeout_406": {"code": 406, "message": "Auth-token absolute timeout (36000 seconds) exceeded",
                          "errorStack": [], "apiError": 1},
    "token_timeout_invalid_400": {"code": 400, "message": "Invalid timeout value {value}", "errorStack": [], "apiError": 1},
    "transaction_not_found_404": {"code": 404, "message": "Transaction {trans_id} not found.", "errorStack": [], "apiError": 1},
    "transaction_failed_400": {"code": 400, "message": "transaction failed:{reason}", "errorStack": [], "apiError": 1},
    "transaction_state_400": {"code": 400, "message": "Invalid transaction state change from {old} to {new}.",
                              "errorStack": [], "apiError": 1},
    "user_not_found_404": {"code": 404, "message": "01020036:3: The requested user ({user}) was not found.",
                           "errorStack": [], "apiError": 3},
    "method_not_allowed_405": {"code": 405, "message": "Method {method} is not supported for {path}", "errorStack": [],
                               "apiError": 1},
    # -- FQDN pools. The delete wording is BIG-IP's (F5Networks/f5-appsvcs-extension issues #204, #212:
    # "0107189b:3: Cannot delete ephemeral object: /TEST/TestApp/test_pool_80: /TEST/example.com.");
    # no public source quotes the modify refusal, so it follows the same form.
    "ephemeral_delete_400": {"code": 400, "message": "0107189b:3: Cannot delete ephemeral object: {pool}: {member}.",
                             "errorStack": [], "apiError": 3},
    "ephemeral_modify_400": {"code": 400, "message": "0107189b:3: Cannot modify ephemeral object: {pool}: {member}.",
                             "errorStack": [], "apiError": 3},
    # -- a '%' not followed by two hex digits: Jetty rejects the URI before restjavad sees it
    "bad_uri_400": "<html><head><title>Error 400 Bad Request</title></head><body><h2>HTTP ERROR 400</h2>"
                   "<p>Problem accessing {path}. Reason:<pre>    Bad Request</pre></p></body></html>",
    "node_not_found_404": {"code": 404, "message": "01020036:3: The requested Node ({node}) was not found.",
                           "errorStack": [], "apiError": 3},
    "as3_not_installed_404": {"code": 404, "message": "Public URI path not registered: /shared/appsvcs/declare",
                              "errorStack": [], "apiError": 1},
}


def error_body(key: str, **values: Any) -> Any:
    """The body for `key` with {placeholders} filled. Integer-only fields stay integers."""
    tpl = ERRORS[key]
    if isinstance(tpl, str):
        return tpl.format(**values) if values else tpl
    out: dict[str, Any] = {}
    for k, v in tpl.items():
        if isinstance(v, str) and "{" in v:
            v = v.format(**values)
            if k == "restOperationId":
                v = int(v)
        out[k] = copy.deepcopy(v)
    return out


class RestError(Exception):
    """Raised by handlers; becomes the HTTP reply."""

    def __init__(self, status: int, body: Any, content_type: str = "application/json; charset=UTF-8",
                 headers: dict[str, str] | None = None):
        super().__init__(status, body)
        self.status = status
        self.body = body
        self.content_type = content_type
        self.headers = headers or {}


def err(key: str, **values: Any) -> RestError:
    body = error_body(key, **values)
    return RestError(body["code"], body)

