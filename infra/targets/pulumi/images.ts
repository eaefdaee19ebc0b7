/**
 * Every image the Pulumi targets use that this repository does not build, pinned by
 * digest in this one place. Override any of them with `cdn:images` in the stack
 * config (e.g. an S3-compatible server image when MinIO's community images are gone
 * upstream, or a mirror). The digests were taken from the registries' tags named
 * beside them; `docker buildx imagetools inspect <ref>` re-checks one.
 */
import { cdnError } from '../../model/errors';

export const DEFAULT_IMAGES = {
  /** Base of the edge, balancer, Redis and Prometheus images (Debian packages via scripts/setup.sh). */
  debian: 'debian:bookworm-slim',
  /** Base of the origin image: Node 20 on Debian bookworm. */
  node: 'node:20-bookworm-slim@sha256:2cf067cfed83d5ea958367df9f966191a942351a2df77d6f0193e162b5febfc0',
  /** S3-compatible object store (docker target, and the object-store instance on aws). */
  minio: 'quay.io/minio/minio:RELEASE.2025-09-07T16-13-09Z@sha256:14cea493d9a34af32f524e538b8346cf79f3321eff8e708c1e2960462bd8936e',
  grafana: 'grafana/grafana:12.1.1@sha256:a1701c2180249361737a99a01bc770db39381640e4d631825d38ff4535efa47d',
  loki: 'grafana/loki:3.5.3@sha256:3165cecce301ce5b9b6e3530284b080934a05cd5cafac3d3d82edcb887b45ecd',
  /**
   * Log shipper (observability/alloy.ts): this image on docker; on aws the same
   * version from Grafana's Debian repository (alloyPackageVersion below), so the one
   * pin here sets both. NOT VERIFIED HERE (no registry access from the development
   * machine): the digest is the one three unrelated public repositories pin for this
   * tag. Check it before the first `pulumi up`:
   *   docker buildx imagetools inspect grafana/alloy:v1.10.2
   * (the "Digest:" line must equal the sha256 below), or pin a digest you checked
   * with `cdn:images.alloy`.
   */
  alloy: 'grafana/alloy:v1.10.2@sha256:bcf27f18c4402869af112fb39e35e1db3804a404686f4caa20bdf77814219223',
} as const;

export type ImageName = keyof typeof DEFAULT_IMAGES;
export type ImageCatalogue = Record<ImageName, string>;

/** Images pulled and run as they are; each must carry a digest. */
export const RUNTIME_IMAGES: ImageName[] = ['minio', 'grafana', 'loki', 'alloy'];

export const DIGEST = /@sha256:[0-9a-f]{64}$/;

/**
 * The Debian package version of Alloy matching the image's tag (`grafana/alloy:v1.10.2@…`
 * -> `1.10.2`), which the aws target installs with apt.
 */
export function alloyPackageVersion(images: ImageCatalogue): string {
  const m = /:v(\d+\.\d+\.\d+)@/.exec(images.alloy);
  if (!m) throw cdnError('CDN_ERR_CONFIG_INVALID', `cdn:images.alloy: expected a version tag (grafana/alloy:vX.Y.Z@sha256:...), got ${images.alloy}`);
  return m[1];
}
