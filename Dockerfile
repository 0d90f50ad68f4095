# trustfold: one image, every role (`trustfold serve --role ...`).
# Production talks to a Kafka cluster and a ClickHouse server (CLICKHOUSE_URL),
# so the embedded engine (chdb, ~540 MB) is left out of the runtime stage.

FROM node:24-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts \
 && rm -rf node_modules/chdb node_modules/@chdb

FROM node:24-bookworm-slim AS runtime
ENV NODE_ENV=production \
    HOST=0.0.0.0 \
    PORT=8080 \
    TRUSTFOLD_DATA_DIR=/var/lib/trustfold
WORKDIR /app
RUN groupadd --system trustfold && useradd --system --gid trustfold --home /app trustfold \
 && mkdir -p /var/lib/trustfold && chown trustfold:trustfold /var/lib/trustfold
COPY --from=deps /app/node_modules ./node_modules
COPY package.json tsconfig.json ./
COPY bin ./bin
COPY schemas ./schemas
COPY services ./services
COPY examples ./examples
USER trustfold
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD node -e "fetch('http://127.0.0.1:'+(process.env.PORT||8080)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"
ENTRYPOINT ["node", "bin/trustfold.js"]
CMD ["serve", "--role", "all"]
