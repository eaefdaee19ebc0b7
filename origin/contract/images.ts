/**
 * Image variants: what the origin does when CDN_IMAGES is not set (a bare origin in
 * development or tests). The same values as the spec's `images` defaults, which the
 * renderer sends as CDN_IMAGES (infra/model/spec.ts; origin/render.test.ts keeps
 * the two equal).
 */
export const DEFAULT_IMAGES = {
  enabled: true,
  widths: [16, 32, 48, 64, 96, 128, 256, 384, 640, 750, 828, 1080, 1200, 1920, 2048, 3840],
  qualities: [50, 75, 90],
  defaultQuality: 75,
  maxInputPixels: 50_000_000,
  maxInputBytes: 50 * 1024 * 1024,
  maxOutputBytes: 20 * 1024 * 1024,
  timeoutSeconds: 10,
  concurrency: 2,
  queue: 32,
  allowSvg: false,
} as const;

/** The most any side of a variant can be, signed or not (edge/lua/cdn/edge/images.lua's MAX_SIDE). */
export const MAX_IMAGE_SIDE = 8192;

/** Where computed variants are kept in the object store (the "cache reserve"): never a valid asset key, so never served or listed as one. */
export const VARIANT_PREFIX = '_variants/';
