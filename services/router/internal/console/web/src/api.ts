// The console's Connect clients. The token the user typed is kept in sessionStorage (gone
// when the tab closes) and sent in the dapr-api-token header, never in a URL.
import { Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { AuditService } from "./gen/parley/audit/v1/audit_pb";
import { ComponentService } from "./gen/parley/component/v1/component_pb";

const tokenKey = "parley-console-token";

export function getToken(): string | null {
  return sessionStorage.getItem(tokenKey);
}

export function setToken(token: string | null): void {
  if (token === null) sessionStorage.removeItem(tokenKey);
  else sessionStorage.setItem(tokenKey, token);
}

// onRefused is called when the router refuses the token, so the app can show the login form.
let onRefused: () => void = () => {};
export function whenRefused(f: () => void): void {
  onRefused = f;
}

const auth: Interceptor = (next) => async (req) => {
  const token = getToken();
  if (token) req.header.set("dapr-api-token", token);
  try {
    return await next(req);
  } catch (e) {
    if (isRefusal(e)) onRefused();
    throw e;
  }
};

export function isRefusal(e: unknown): boolean {
  const c = ConnectError.from(e).code;
  return c === Code.Unauthenticated || c === Code.PermissionDenied;
}

export function errorText(e: unknown): string {
  const err = ConnectError.from(e);
  if (err.code === Code.Unauthenticated) return "The router wants an API token.";
  if (err.code === Code.PermissionDenied) return "The router refused this token.";
  return err.rawMessage || err.message;
}

const transport = createConnectTransport({
  baseUrl: location.origin,
  useBinaryFormat: true,
  interceptors: [auth],
});

export const audit = createClient(AuditService, transport);
export const components = createClient(ComponentService, transport);
