import type { OriginConfig } from '../config/origin-config';
import type { AssetMetadata } from './storage/storage-driver';

/** Versioned (content-addressed) URLs never change meaning: cache them for a year. */
export const IMMUTABLE_CACHE_CONTROL = 'public, max-age=31536000, immutable';

/** The asset's own policy, else the first CDN_CACHE_CONTROL_BY_TYPE match, else the default. */
export function cacheControlOf(metadata: AssetMetadata, config: OriginConfig): string {
  if (metadata.cacheControl !== null) {
    return metadata.cacheControl;
  }
  const essence = metadata.contentType.split(';')[0].trim().toLowerCase();
  for (const [pattern, value] of config.cacheControlByType) {
    const matches = pattern.endsWith('/*') ? essence.startsWith(pattern.slice(0, -1)) : essence === pattern;
    if (matches) {
      return value;
    }
  }
  return config.defaultCacheControl;
}

/** `/_v/<sha256>/<key>`: a path no key can have (keys start with a letter or digit). */
export const VERSIONED_PREFIX = '_v/';

export function versionedPath(metadata: Pick<AssetMetadata, 'key' | 'sha256'>): string {
  return `/${VERSIONED_PREFIX}${metadata.sha256}/${metadata.key}`;
}

/** Splits "_v/<sha256>/<key>" into its parts, or null when the shape is wrong. */
export function parseVersionedKey(rawKey: string): { sha256: string; key: string } | null {
  const match = /^_v\/([0-9a-f]{64})\/(.+)$/.exec(rawKey);
  return match === null ? null : { sha256: match[1], key: match[2] };
}
