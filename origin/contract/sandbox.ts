/**
 * Documents that can run script when opened directly from the CDN's host: SVG, and
 * any XML, which a browser renders with XHTML's script elements. The origin serves
 * them with a sandboxing Content-Security-Policy, and so do the edges when they
 * read such an object from the bucket themselves (edge/render.ts hands this over).
 */
export const SANDBOX_CSP = "default-src 'none'; style-src 'unsafe-inline'; sandbox";

/** Media types sandboxed by name; every `*+xml` type is too (SANDBOXED_SUFFIX). */
export const SANDBOXED_TYPES: readonly string[] = ['text/xml', 'application/xml'];
export const SANDBOXED_SUFFIX = '+xml';

/** Whether a Content-Type (parameters allowed) needs the sandbox. */
export function needsSandbox(contentType: string): boolean {
  const essence = contentType.split(';')[0].trim().toLowerCase();
  return SANDBOXED_TYPES.includes(essence) || essence.endsWith(SANDBOXED_SUFFIX);
}
