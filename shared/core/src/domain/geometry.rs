//! Boxes and polygons in absolute pixels, checked against the real image size.
//!
//! A shape may poke out of the image by at most [`EDGE_TOLERANCE`] pixels (rounding in
//! drawing tools); it is then clamped to the image. Anything further out is rejected.

pub const EDGE_TOLERANCE: f64 = 1.0;

/// `[x, y, width, height]` in pixels, inside the image, width and height > 0.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BoundingBox {
    pub x: f64,
    pub y: f64,
    pub width: f64,
    pub height: f64,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GeometryError {
    #[error("a box is [x, y, width, height]: 4 numbers, got {0}")]
    BoxArity(usize),
    #[error("coordinates must be finite numbers")]
    NotFinite,
    #[error("width and height must be greater than 0, got {width} x {height}")]
    EmptyBox { width: f64, height: f64 },
    #[error("the shape reaches ({x}, {y}), outside the {image_width} x {image_height} image")]
    OutsideImage {
        x: f64,
        y: f64,
        image_width: u32,
        image_height: u32,
    },
    #[error("a polygon needs at least 3 points, got {0}")]
    TooFewPoints(usize),
    #[error("a polygon point is [x, y]: 2 numbers")]
    PointArity,
    #[error("the polygon has zero area")]
    ZeroArea,
}

/// Coordinates closer to 0 than this are 0: a millionth of a pixel means nothing, and DynamoDB
/// refuses numbers below 1e-130 (`[1e-300, 0, 5, 5]` was a 503 there). Every other stored
/// coordinate, and every width or height (a difference of such coordinates), stays far above it.
const SNAP_TO_ZERO: f64 = 1e-6;

fn clamp_axis(value: f64, limit: u32) -> Option<f64> {
    let limit = f64::from(limit);
    if value < -EDGE_TOLERANCE || value > limit + EDGE_TOLERANCE {
        None
    } else if value.abs() < SNAP_TO_ZERO {
        Some(0.0)
    } else {
        Some(value.clamp(0.0, limit))
    }
}

fn clamp_point(
    x: f64,
    y: f64,
    image_width: u32,
    image_height: u32,
) -> Result<(f64, f64), GeometryError> {
    match (clamp_axis(x, image_width), clamp_axis(y, image_height)) {
        (Some(x), Some(y)) => Ok((x, y)),
        _ => Err(GeometryError::OutsideImage {
            x,
            y,
            image_width,
            image_height,
        }),
    }
}

impl BoundingBox {
    /// Parses `[x, y, w, h]` and clamps it into a `image_width` x `image_height` image.
    pub fn parse(
        values: &[f64],
        image_width: u32,
        image_height: u32,
    ) -> Result<Self, GeometryError> {
        let [x, y, width, height] = values else {
            return Err(GeometryError::BoxArity(values.len()));
        };
        if !values.iter().all(|v| v.is_finite()) {
            return Err(GeometryError::NotFinite);
        }
        if *width <= 0.0 || *height <= 0.0 {
            return Err(GeometryError::EmptyBox {
                width: *width,
                height: *height,
            });
        }
        let (left, top) = clamp_point(*x, *y, image_width, image_height)?;
        let (right, bottom) = clamp_point(x + width, y + height, image_width, image_height)?;
        if right - left <= 0.0 || bottom - top <= 0.0 {
            return Err(GeometryError::EmptyBox {
                width: right - left,
                height: bottom - top,
            });
        }
        Ok(Self {
            x: left,
            y: top,
            width: right - left,
            height: bottom - top,
        })
    }

    pub fn to_array(self) -> [f64; 4] {
        [self.x, self.y, self.width, self.height]
    }

    pub fn area(&self) -> f64 {
        self.width * self.height
    }
}

/// A simple polygon of at least 3 points with non-zero area, inside the image.
#[derive(Debug, Clone, PartialEq)]
pub struct Polygon {
    points: Vec<[f64; 2]>,
}

impl Polygon {
    pub fn parse(
        points: &[Vec<f64>],
        image_width: u32,
        image_height: u32,
    ) -> Result<Self, GeometryError> {
        if points.len() < 3 {
            return Err(GeometryError::TooFewPoints(points.len()));
        }
        let mut clamped = Vec::with_capacity(points.len());
        for point in points {
            let [x, y] = point.as_slice() else {
                return Err(GeometryError::PointArity);
            };
            if !x.is_finite() || !y.is_finite() {
                return Err(GeometryError::NotFinite);
            }
            let (x, y) = clamp_point(*x, *y, image_width, image_height)?;
            clamped.push([x, y]);
        }
        let polygon = Self { points: clamped };
        if polygon.area() <= f64::EPSILON {
            return Err(GeometryError::ZeroArea);
        }
        Ok(polygon)
    }

    pub fn points(&self) -> &[[f64; 2]] {
        &self.points
    }

    /// Shoelace formula.
    pub fn area(&self) -> f64 {
        shoelace_area(&self.points)
    }

    /// The tightest box around the polygon.
    pub fn bounding_box(&self) -> BoundingBox {
        let (mut min_x, mut min_y) = (f64::INFINITY, f64::INFINITY);
        let (mut max_x, mut max_y) = (f64::NEG_INFINITY, f64::NEG_INFINITY);
        for [x, y] in &self.points {
            min_x = min_x.min(*x);
            min_y = min_y.min(*y);
            max_x = max_x.max(*x);
            max_y = max_y.max(*y);
        }
        BoundingBox {
            x: min_x,
            y: min_y,
            width: max_x - min_x,
            height: max_y - min_y,
        }
    }
}

pub fn shoelace_area(points: &[[f64; 2]]) -> f64 {
    let n = points.len();
    let twice: f64 = (0..n)
        .map(|i| {
            let [x1, y1] = points[i];
            let [x2, y2] = points[(i + 1) % n];
            x1 * y2 - x2 * y1
        })
        .sum();
    twice.abs() / 2.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn coordinates_a_millionth_of_a_pixel_from_zero_are_zero() {
        let parsed = BoundingBox::parse(&[1e-300, -1e-200, 5.0, 5.0], 10, 10).unwrap();
        assert_eq!(parsed.to_array(), [0.0, 0.0, 5.0, 5.0]);
        assert!(matches!(
            BoundingBox::parse(&[0.0, 0.0, 1e-300, 5.0], 10, 10),
            Err(GeometryError::EmptyBox { .. })
        ));
        let polygon = Polygon::parse(
            &[vec![1e-250, 0.0], vec![4.0, 1e-131], vec![4.0, 4.0]],
            10,
            10,
        )
        .unwrap();
        assert_eq!(polygon.points()[0], [0.0, 0.0]);
        assert_eq!(polygon.points()[1], [4.0, 0.0]);
    }

    #[test]
    fn zero_size_box_is_an_error_not_a_crash() {
        assert!(matches!(
            BoundingBox::parse(&[1.0, 1.0, 0.0, 5.0], 10, 10),
            Err(GeometryError::EmptyBox { .. })
        ));
    }

    #[test]
    fn box_one_pixel_out_is_clamped_and_two_out_is_rejected() {
        let clamped = BoundingBox::parse(&[-0.5, 0.0, 10.9, 5.0], 10, 10).unwrap();
        assert_eq!(clamped.to_array(), [0.0, 0.0, 10.0, 5.0]);
        assert!(BoundingBox::parse(&[-2.0, 0.0, 5.0, 5.0], 10, 10).is_err());
        assert!(BoundingBox::parse(&[0.0, 0.0, 5.0, 12.5], 10, 10).is_err());
    }

    #[test]
    fn collinear_polygon_is_rejected() {
        let points = vec![vec![0.0, 0.0], vec![1.0, 1.0], vec![2.0, 2.0]];
        assert_eq!(
            Polygon::parse(&points, 10, 10),
            Err(GeometryError::ZeroArea)
        );
    }

    #[test]
    fn square_polygon_area_and_box() {
        let points = vec![
            vec![1.0, 1.0],
            vec![4.0, 1.0],
            vec![4.0, 3.0],
            vec![1.0, 3.0],
        ];
        let polygon = Polygon::parse(&points, 10, 10).unwrap();
        assert_eq!(polygon.area(), 6.0);
        assert_eq!(polygon.bounding_box().to_array(), [1.0, 1.0, 3.0, 2.0]);
    }

    proptest! {
        #[test]
        fn accepted_boxes_lie_inside_the_image_with_positive_size(
            x in -5.0f64..60.0, y in -5.0f64..60.0, w in -5.0f64..60.0, h in -5.0f64..60.0,
            image_width in 1u32..50, image_height in 1u32..50,
        ) {
            if let Ok(b) = BoundingBox::parse(&[x, y, w, h], image_width, image_height) {
                prop_assert!(b.width > 0.0 && b.height > 0.0);
                prop_assert!(b.x >= 0.0 && b.y >= 0.0);
                prop_assert!(b.x + b.width <= f64::from(image_width) + 1e-9);
                prop_assert!(b.y + b.height <= f64::from(image_height) + 1e-9);
                // Never moved by more than the tolerance.
                prop_assert!((b.x - x).abs() <= EDGE_TOLERANCE);
                prop_assert!((b.x + b.width - (x + w)).abs() <= EDGE_TOLERANCE);
            } else {
                let inside = w > 0.0 && h > 0.0 && x >= 0.0 && y >= 0.0
                    && x + w <= f64::from(image_width) && y + h <= f64::from(image_height);
                prop_assert!(!inside, "a box fully inside was rejected");
            }
        }

        #[test]
        fn non_finite_coordinates_never_pass(pick in 0usize..4, bad in prop_oneof![Just(f64::NAN), Just(f64::INFINITY), Just(f64::NEG_INFINITY)]) {
            let mut values = [1.0, 1.0, 2.0, 2.0];
            values[pick] = bad;
            prop_assert!(BoundingBox::parse(&values, 10, 10).is_err());
        }

        #[test]
        fn accepted_polygons_have_positive_area_inside_the_image(
            points in proptest::collection::vec((-3.0f64..25.0, -3.0f64..25.0), 0..8),
        ) {
            let points: Vec<Vec<f64>> = points.into_iter().map(|(x, y)| vec![x, y]).collect();
            if let Ok(polygon) = Polygon::parse(&points, 20, 20) {
                prop_assert!(polygon.points().len() >= 3);
                prop_assert!(polygon.area() > 0.0);
                for [x, y] in polygon.points() {
                    prop_assert!((0.0..=20.0).contains(x) && (0.0..=20.0).contains(y));
                }
            }
        }
    }
}
