/**
 * The Cache-Control the origin gives assets that carry none of their own. The edges
 * apply the same table when they read raw assets from the bucket themselves
 * (edge/render.ts hands it to cdn/edge/bucket.lua), so both paths answer alike.
 */

/** CDN_DEFAULT_CACHE_CONTROL's default: assets whose type the table below does not name. */
export const DEFAULT_CACHE_CONTROL = 'public, max-age=3600';

/**
 * Defaults per content type: images, fonts and media change rarely (and every change
 * is purged), HTML is short-lived. CDN_CACHE_CONTROL_BY_TYPE replaces this table.
 */
export const DEFAULT_CACHE_CONTROL_BY_TYPE: readonly (readonly [string, string])[] = [
  ['image/*', 'public, max-age=86400'],
  ['font/*', 'public, max-age=86400'],
  ['video/*', 'public, max-age=86400'],
  ['audio/*', 'public, max-age=86400'],
  ['text/html', 'public, max-age=60, stale-while-revalidate=60'],
];

/**
 * Short negative caching for unknown keys: safe because creating a key publishes a
 * purge of its path, so an edge drops its cached 404 as soon as the asset exists.
 */
export const NOT_FOUND_CACHE_CONTROL = 'public, max-age=5';
