import { z } from 'zod';

/** The `images` section of the config file: how `input_image` parts are fetched and bounded. See docs/images.md. */
export const imagesSchema = z
  .strictObject({
    /** Bytes of one image at most, whatever its source (data URL, http(s) URL, uploaded file). */
    max_bytes: z
      .number()
      .int()
      .min(1024)
      .max(100 * 1024 * 1024)
      .default(20 * 1024 * 1024),
    /** Bytes of all images of one prompt at most (the request's and its history's). */
    max_total_bytes: z
      .number()
      .int()
      .min(1024)
      .max(1024 * 1024 * 1024)
      .default(50 * 1024 * 1024),
    /** Time to fetch one image URL at most, redirects and body included. */
    timeout_ms: z.number().int().min(100).max(120_000).default(15_000),
    max_redirects: z.number().int().min(0).max(10).default(3),
    /** Images in one prompt at most: the request's own, then the newest of its history. */
    max_per_request: z.number().int().min(1).max(100).default(16),
    /** Hosts (names, addresses or CIDRs) whose images may be fetched although they are private: an intranet, or a test server. */
    allowed_private_hosts: z.array(z.string().min(1)).default([]),
    user_agent: z.string().min(1).default('eugpt-images/1.0 (+https://github.com/eugpt/eugpt)'),
  })
  .prefault({});

export type ImagesConfig = z.infer<typeof imagesSchema>;
