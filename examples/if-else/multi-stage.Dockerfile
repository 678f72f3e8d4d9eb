# The build of ./Dockerfile without IF: one stage per branch, chosen by the name of the last
# stage's base (the branch-version-${BUILD_VERSION} pattern). Accepts BUILD_VERSION 1, 2 and 3.
ARG BUILD_VERSION=1

FROM busybox AS branch-version-1
RUN touch version1

FROM busybox AS branch-version-2
RUN touch version2

FROM busybox AS branch-version-3
RUN touch other

FROM branch-version-${BUILD_VERSION} AS final
RUN ls > /files.txt
