# syntax=docker/dockerfile:1

# 1. Compile TypeScript to dist/.
FROM node:22-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build

# 2. Production dependencies only.
FROM node:22-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund

# 3. The runtime image: no compiler, no dev dependencies (no tsx, esbuild or pino-pretty), not root.
#    bin/eugpt.js runs dist/ here (NODE_ENV=production), so `node bin/eugpt.js org list` works in it.
FROM node:22-bookworm-slim
# A heap ceiling: without one V8 sizes the heap from the host's memory, not the container's, and lets
# garbage pile up between full collections (docs/operations.md, "Memory"). Override NODE_OPTIONS to change it.
ENV NODE_ENV=production \
    NODE_OPTIONS=--max-old-space-size=768 \
    HOST=0.0.0.0 \
    PORT=8080 \
    EUGPT_DATA_DIR=/data
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
COPY bin ./bin
COPY migrations ./migrations
# The embedded database's folder (unused with DATABASE_URL): mount a volume on /data to keep it.
RUN mkdir -p /data && chown node:node /data
USER node
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.PORT || 8080) + '/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
CMD ["node", "dist/main.js"]
